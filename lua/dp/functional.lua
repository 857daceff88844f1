-- dp.functional: the differentiable ops of dp.h as Lua functions on tensors (also the methods of
-- a tensor, and dp.<name>). Numbers mix with tensors; dims are 1-based.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"

local C, wrap, raise = dpffi.C, dpffi.wrap, dpffi.raise
local ptr, optional, is_tensor = args.ptr, args.optional, args.is_tensor

local F = {}

-- A 0-d tensor holding v in x's dtype and device, for ops without a scalar form.
local function scalar_like(p, v)
  return wrap(C.dp_tensor_scalar(p.dtype, p.device, v))
end

function F.affine(x, scale, shift)
  return wrap(C.dp_affine(ptr(x, "affine", 1), scale or 1, shift or 0))
end

-- Binary ops: tensor op tensor broadcasts in C; a number on either side becomes an affine map.
function F.add(a, b)
  if type(b) == "number" then return wrap(C.dp_affine(ptr(a, "add", 1), 1, b)) end
  if type(a) == "number" then return wrap(C.dp_affine(ptr(b, "add", 2), 1, a)) end
  return wrap(C.dp_add(ptr(a, "add", 1), ptr(b, "add", 2)))
end

function F.sub(a, b)
  if type(b) == "number" then return wrap(C.dp_affine(ptr(a, "sub", 1), 1, -b)) end
  if type(a) == "number" then return wrap(C.dp_affine(ptr(b, "sub", 2), -1, a)) end
  return wrap(C.dp_sub(ptr(a, "sub", 1), ptr(b, "sub", 2)))
end

function F.mul(a, b)
  if type(b) == "number" then return wrap(C.dp_affine(ptr(a, "mul", 1), b, 0)) end
  if type(a) == "number" then return wrap(C.dp_affine(ptr(b, "mul", 2), a, 0)) end
  return wrap(C.dp_mul(ptr(a, "mul", 1), ptr(b, "mul", 2)))
end

function F.div(a, b)
  if type(b) == "number" then return wrap(C.dp_affine(ptr(a, "div", 1), 1 / b, 0)) end
  if type(a) == "number" then
    local inv = wrap(C.dp_pow_scalar(ptr(b, "div", 2), -1))
    return wrap(C.dp_affine(inv.ptr, a, 0))
  end
  return wrap(C.dp_div(ptr(a, "div", 1), ptr(b, "div", 2)))
end

function F.maximum(a, b)
  if type(b) == "number" then b = scalar_like(ptr(a, "maximum", 1), b) end
  if type(a) == "number" then a = scalar_like(ptr(b, "maximum", 2), a) end
  return wrap(C.dp_maximum(ptr(a, "maximum", 1), ptr(b, "maximum", 2)))
end

function F.pow(x, p)
  if type(p) ~= "number" then
    raise(("pow: the exponent must be a number, got %s"):format(args.describe(p)))
  end
  return wrap(C.dp_pow_scalar(ptr(x, "pow", 1), p))
end

-- x ^ p for the ^ operator: a number base means exp(p * log(base)).
function F.pow_operator(x, p)
  if type(x) == "number" then
    local scaled = F.mul(p, math.log(x))
    return wrap(C.dp_exp(scaled.ptr))
  end
  return F.pow(x, p)
end

local unary = { "neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "gelu" }
for _, name in ipairs(unary) do
  local fn = C["dp_" .. name]
  F[name] = function(x) return wrap(fn(ptr(x, name, 1))) end
end

function F.matmul(a, b)
  return wrap(C.dp_matmul(ptr(a, "matmul", 1), ptr(b, "matmul", 2)))
end

-- x (..., in) @ w (out, in)^T + bias (out); bias may be nil.
function F.linear(x, w, bias)
  return wrap(C.dp_linear(ptr(x, "linear", 1), ptr(w, "linear", 2), optional(bias, "linear", 3)))
end

-- act(x @ w^T + bias) as one op (dp_linear_act: the GEMM, then bias and activation in one pass);
-- act "gelu" (erf form), "relu", "tanh" or "none". bias may be nil.
local activations = { none = C.DP_ACT_NONE, gelu = C.DP_ACT_GELU, relu = C.DP_ACT_RELU, tanh = C.DP_ACT_TANH }
function F.linear_act(x, w, bias, act)
  local id = activations[act]
  if id == nil then
    raise(("linear_act: act must be \"gelu\", \"relu\", \"tanh\" or \"none\", got %s")
          :format(type(act) == "string" and ("%q"):format(act) or args.describe(act)))
  end
  return wrap(C.dp_linear_act(ptr(x, "linear_act", 1), ptr(w, "linear_act", 2),
                              optional(bias, "linear_act", 3), id))
end

-- Reductions: dims nil (all), a dim or a table of dims; keepdim keeps them as size 1.
function F.sum(x, dims, keepdim)
  local p = ptr(x, "sum", 1)
  local n, buf = args.dims(p, dims, "sum")
  return wrap(C.dp_sum(p, n, buf, keepdim and 1 or 0))
end

function F.mean(x, dims, keepdim)
  local p = ptr(x, "mean", 1)
  local n, buf = args.dims(p, dims, "mean")
  return wrap(C.dp_mean(p, n, buf, keepdim and 1 or 0))
end

-- Max over one dim, or over all elements when dim is nil (a 0-d result).
function F.max(x, dim, keepdim)
  local p = ptr(x, "max", 1)
  if dim == nil then
    local flat = wrap(C.dp_reshape(p, 1, ffi.new("int64_t[1]", -1)))
    return wrap(C.dp_max(flat.ptr, 0, 0))
  end
  return wrap(C.dp_max(p, args.dim(p, dim, "max"), keepdim and 1 or 0))
end

-- Position of the first maximum along dim as i64 (0-based, like class ids and labels), or in the
-- flattened tensor when dim is nil.
function F.argmax(x, dim, keepdim)
  local p = ptr(x, "argmax", 1)
  if dim == nil then
    local flat = wrap(C.dp_reshape(p, 1, ffi.new("int64_t[1]", -1)))
    return wrap(C.dp_argmax(flat.ptr, 0, 0))
  end
  return wrap(C.dp_argmax(p, args.dim(p, dim, "argmax"), keepdim and 1 or 0))
end

function F.softmax(x, dim)
  local p = ptr(x, "softmax", 1)
  return wrap(C.dp_softmax(p, args.dim(p, dim or -1, "softmax")))
end

function F.log_softmax(x, dim)
  local p = ptr(x, "log_softmax", 1)
  return wrap(C.dp_log_softmax(p, args.dim(p, dim or -1, "log_softmax")))
end

-- softmax(x + mask) in one pass (dp_softmax_masked): mask an additive bias of x's dtype that
-- broadcasts to x (not differentiable in it); dim must be the last (the default).
function F.softmax_masked(x, mask, dim)
  local p = ptr(x, "softmax_masked", 1)
  return wrap(C.dp_softmax_masked(p, ptr(mask, "softmax_masked", 2), args.dim(p, dim or -1, "softmax_masked")))
end

-- Over the last dim; weight and bias (last,) may be nil; eps defaults to 1e-5.
-- x (B, ..., p) + bias (p) as its own op, so the DP engine sees the bias's per-sample gradient.
function F.bias_add(x, bias)
  return wrap(C.dp_bias_add(ptr(x, "bias_add", 1), ptr(bias, "bias_add", 2)))
end

function F.layer_norm(x, weight, bias, eps)
  return wrap(C.dp_layer_norm(ptr(x, "layer_norm", 1), optional(weight, "layer_norm", 2),
                              optional(bias, "layer_norm", 3), eps or 1e-5))
end

-- Rows of weight (V, D) at integer ids (0-based, any shape) -> (..., D).
function F.embedding(weight, indices)
  return wrap(C.dp_embedding(ptr(weight, "embedding", 1), ptr(indices, "embedding", 2)))
end

-- x with rows ids[i] (0-based) of its first dim increased by src[i].
function F.index_add(x, indices, src)
  return wrap(C.dp_index_add(ptr(x, "index_add", 1), ptr(indices, "index_add", 2),
                             ptr(src, "index_add", 3)))
end

local reductions = { none = 0, mean = 1, sum = 2 }

-- logits (N, C) against labels (N,) of 0-based class ids.
-- opts: { ignore_index = -100, reduction = "mean" | "sum" | "none" }.
function F.cross_entropy(logits, labels, opts)
  opts = opts or {}
  local reduction = reductions[opts.reduction or "mean"]
  if not reduction then
    raise(("cross_entropy: reduction must be \"mean\", \"sum\" or \"none\", got %s")
          :format(tostring(opts.reduction)))
  end
  return wrap(C.dp_cross_entropy(ptr(logits, "cross_entropy", 1), ptr(labels, "cross_entropy", 2),
                                 opts.ignore_index or -100, reduction))
end

-- value where mask (u8, broadcast to x) is nonzero, x elsewhere.
function F.masked_fill(x, mask, value)
  if type(value) ~= "number" then
    raise(("masked_fill: value must be a number, got %s"):format(args.describe(value)))
  end
  return wrap(C.dp_masked_fill(ptr(x, "masked_fill", 1), ptr(mask, "masked_fill", 2), value))
end

-- Inverted dropout with probability p; train defaults to true; rng defaults to dp's global one.
function F.dropout(x, p, train, rng)
  if train == nil then train = true end
  rng = rng or require("dp.rng").default()
  return wrap(C.dp_dropout(ptr(x, "dropout", 1), p or 0.5, train and 1 or 0, rng))
end

-- In place (no autograd): they return x so calls chain.
function F.fill_(x, value)
  dpffi.check(C.dp_fill_(ptr(x, "fill", 1), value))
  return x
end

function F.copy_(x, src)
  if type(src) == "number" then return F.fill_(x, src) end
  dpffi.check(C.dp_copy_(ptr(x, "copy", 1), ptr(src, "copy", 2)))
  return x
end

function F.axpy_(x, alpha, src)
  dpffi.check(C.dp_axpy_(ptr(x, "axpy_", 1), alpha, ptr(src, "axpy_", 3)))
  return x
end

function F.scale_(x, alpha)
  dpffi.check(C.dp_scale_(ptr(x, "scale_", 1), alpha))
  return x
end

F.is_tensor = is_tensor

return F
