# `make model`: fetch a released EfficientDet checkpoint, verify it, convert it into
# models/<name>.safetensors (skipped when that file exists). See docs/models.md.
#   make model MODEL_NAME=tf_efficientdet_d3
#   make model FETCH_FROM=/path/to/tf_efficientdet_d0_34-f153e0cf.pth   (offline)
# Two variables: MODEL_NAME names a model to fetch; MODEL is a weights file (`make run`,
# `make cluster`). `make model MODEL=NAME` (the old spelling) is refused with a message
# rather than fetching the default in its place.
MODEL_NAME ?= tf_efficientdet_d0
MODELS_DIR ?= models
FETCH_FROM ?=

.PHONY: model
# The converter checks every tensor against the engine's architecture: it needs effdet-detect.
model: $(BUILD)/effdet-detect
	@if [ -n "$(MODEL)" ] && [ ! -f "$(MODEL)" ]; then \
	  echo "make model: MODEL is a weights file (make run, make cluster); name the model to fetch with MODEL_NAME: make model MODEL_NAME=$(MODEL)" >&2; \
	  exit 1; fi
	EFFDET_DETECT=$(BUILD)/effdet-detect tools/fetch-model.sh $(MODEL_NAME) $(MODELS_DIR) $(if $(FETCH_FROM),--from $(FETCH_FROM))
