// Builds upstream flannel for the end-to-end tests; nothing from upstream is committed.
module bake.test/k8s/flannel

go 1.26.0

tool github.com/flannel-io/flannel/cmd/install_conf

require github.com/flannel-io/flannel v0.28.10 // indirect
