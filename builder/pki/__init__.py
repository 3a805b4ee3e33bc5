"""PKI: kubeadm-compatible crypto, the certificate list, the secrets bundle and which node holds what."""
