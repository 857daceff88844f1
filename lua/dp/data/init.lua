-- dp.data: data for DP-SGD. dp.data.tensors{...} (an in-memory dataset of tensors sharing dim 1,
-- batched by gathering rows), dp.data.sampler (logical batches: Poisson or shuffled) and
-- dp.data.micro_batches (splitting a logical batch into physical ones under size and memory
-- caps) and dp.data.staging (batches copied to the GPU through pinned host buffers, behind
-- dataset:to_device). Submodules load on first access.
return require("dp.lazy")("dp.data")
