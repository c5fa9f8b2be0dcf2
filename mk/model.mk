# `make model`: fetch a released EfficientDet checkpoint, verify it, convert it into
# models/<name>.safetensors (skipped when that file exists). See docs/models.md.
#   make model MODEL_NAME=tf_efficientdet_d3
#   make model FETCH_FROM=/path/to/tf_efficientdet_d0_34-f153e0cf.pth   (offline)
MODEL      ?= tf_efficientdet_d0
MODEL_NAME ?= $(MODEL)
MODELS_DIR ?= models
FETCH_FROM ?=

.PHONY: model
# The converter checks every tensor against the engine's architecture: it needs effdet-detect.
model: $(BUILD)/effdet-detect
	EFFDET_DETECT=$(BUILD)/effdet-detect tools/fetch-model.sh $(MODEL_NAME) $(MODELS_DIR) $(if $(FETCH_FROM),--from $(FETCH_FROM))
