#!/bin/bash
# bake-bootstrap-cni.service: the pod network add-on (first control plane only). A control plane that
# runs pods (cluster.allowSchedulingOnControlPlanes) is never tainted: its kubeadm config says
# `nodeRegistration.taints: []`.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

cni_install() {
    local -a urls seeded applied=()
    split BAKE_CNI_URLS urls
    split BAKE_CNI_MANIFESTS seeded
    install -d -m 0700 "$CNI_WORK_DIR"
    local url file name
    for url in "${urls[@]}"; do
        file="$CNI_WORK_DIR/${url##*/}"
        log "downloading $url"
        fetch -o "$file.tmp" "$url"
        mv "$file.tmp" "$file"
        applied+=(-f "$file")
    done
    # cluster.airgap: the manifests came with the images seed (the runtime phase copied them here).
    for name in "${seeded[@]}"; do
        applied+=(-f "$CNI_WORK_DIR/${name##*/}")
    done
    case $BAKE_CNI in
    calico)
        kubectl_retry apply --server-side --force-conflicts "${applied[@]}"
        kubectl_retry wait --for=condition=established --timeout=300s \
            crd/installations.operator.tigera.io crd/apiservers.operator.tigera.io
        kubectl_retry apply -f "$BAKE_CNI_CONFIG"
        ;;
    flannel)
        # One apply of the manifests with the profile's network patched into flannel's ConfigMap (the
        # kustomization names them): no flannel pod starts with upstream's default network. Server-side
        # and without kubectl's own validation, which first fetches and parses the API's OpenAPI documents:
        # half the apply's time on an emulated first boot (the manifests are upstream's, the patch ours).
        install -m 0600 "$BAKE_CNI_CONFIG" "$CNI_WORK_DIR/kustomization.yaml"
        kubectl_retry apply --server-side --force-conflicts --validate=false -k "$CNI_WORK_DIR"
        ;;
    cilium)
        if ((${#seeded[@]} > 0)); then
            # air gap: a manifest rendered beforehand (helm template / cilium install --dry-run)
            kubectl_admin apply --server-side --force-conflicts "${applied[@]}"
            return 0
        fi
        (cd "$CNI_WORK_DIR" && sha256sum --check "$(basename "${urls[1]}")")
        tar -xzf "$CNI_WORK_DIR/$(basename "${urls[0]}")" -C /usr/local/bin cilium
        if kubectl_admin -n kube-system get daemonset cilium >/dev/null 2>&1; then
            KUBECONFIG=$ADMIN_CONF cilium upgrade --version "$BAKE_CILIUM_VERSION" --values "$BAKE_CNI_CONFIG"
        else
            KUBECONFIG=$ADMIN_CONF cilium install --version "$BAKE_CILIUM_VERSION" --values "$BAKE_CNI_CONFIG"
        fi
        ;;
    none) log "cluster.cni is none: no pod network installed" ;;
    *) die "unknown CNI $BAKE_CNI" ;;
    esac
}

bake_start bake-bootstrap-cni
if [[ $BAKE_ROLE == init ]]; then
    step cni cni_install
fi
