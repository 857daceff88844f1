-- dp.hf: Hugging Face checkpoint I/O: dp.hf.safetensors (the tensor file format), dp.hf.config
-- (BertConfig's config.json) and dp.hf.checkpoint (loading a model's parameters from a BERT
-- checkpoint and saving them back); each loads on first access.
return require("dp.lazy")("dp.hf")
