# `make cluster N=3 MODEL=path/to.safetensors`: N effdetd replicas on 127.0.0.1:18081..
# behind Debian's nginx (deploy/nginx/effdetd.conf) on CLUSTER_LISTEN, all in the
# foreground; Ctrl-C stops them. Logs and nginx's prefix in build/cluster/.
#   make cluster N=3 MODEL=../shared/reference/d0/weights.safetensors
#   make cluster N=2 MODEL=m.safetensors CLUSTER_LISTEN=0.0.0.0:8080 CLUSTER_ARGS="--threads-per-worker 2"
N              ?= 3
CLUSTER_LISTEN ?= 127.0.0.1:8080
CLUSTER_PORT   ?= 18081
CLUSTER_DIR    ?= build/cluster
CLUSTER_ARGS   ?=

.PHONY: cluster
cluster: $(BUILD)/effdetd
	@test -n "$(MODEL)" || \
	  { echo "make cluster: give the model: make cluster N=3 MODEL=path/to.safetensors"; exit 1; }
	EFFDETD=$(BUILD)/effdetd deploy/cluster.sh run $(CLUSTER_DIR) $(CLUSTER_LISTEN) $(N) $(CLUSTER_PORT) \
	  "$(MODEL)" $(CLUSTER_ARGS)
