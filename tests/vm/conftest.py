"""Session fixtures for the VM harness: the guest images, built once per recipe and cached on disk."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .harness import qemu_available
from .image import GuestImage, ensure_image


@pytest.fixture(scope="session")
def vm_image() -> Callable[[str], GuestImage]:
    """`vm_image("amd64")`: the cached image, built first if the recipe changed; skips if QEMU cannot run."""
    built: dict[str, GuestImage] = {}

    def get(arch: str) -> GuestImage:
        if arch not in built:
            reason = qemu_available(arch)
            if reason is not None:
                pytest.skip(f"cannot boot {arch} VMs here: {reason}")
            built[arch] = ensure_image(arch)
        return built[arch]

    return get


@pytest.fixture(scope="session")
def vm_image_amd64(vm_image: Callable[[str], GuestImage]) -> GuestImage:
    return vm_image("amd64")


@pytest.fixture(scope="session")
def vm_image_arm64(vm_image: Callable[[str], GuestImage]) -> GuestImage:
    return vm_image("arm64")
