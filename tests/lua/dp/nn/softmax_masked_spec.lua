-- Specs for F.softmax_masked (dp_softmax_masked): equal to softmax(x + mask) bit for bit with the
-- same gradient, its errors, and BERT self-attention with a padding mask unchanged against the
-- composed formula (scores + mask, then softmax) written out here.
local dp = require "dp"
local F = require "dp.functional"
local attention = require "dp.nn.attention"
local bert_config = require "dp.nn.bert_config"
local precision = require "dp.precision"
local tu = require "testutil"

local tiny = { vocab_size = 30, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
               intermediate_size = 12, max_position_embeddings = 10, type_vocab_size = 2, num_labels = 3 }

local function ids(rows) return dp.tensor(rows, "i64") end

-- Exact equality of every value (NaN equal to NaN).
local function assert_same(got, want, what)
  local a, b = tu.values(got), tu.values(want)
  assert.are.equal(#b, #a)
  for i = 1, #a do
    local ok = a[i] == b[i] or (a[i] ~= a[i] and b[i] ~= b[i])
    assert(ok, ("%s: value %d is %.17g, expected %.17g"):format(what, i, a[i], b[i]))
  end
end

-- BertSelfAttention's output written as the composed ops: scores + mask_bias, then softmax.
-- dt: the module's compute dtype (nil without a precision policy), as in its forward.
local function composed(att, x, mask_bias, dt)
  local B, T, H = x:size(1), x:size(2), x:size(3)
  local heads, hd = att.num_heads, att.head_dim
  local function own(t) return (dt and t:dtype() ~= dt) and t:cast(dt) or t end
  local function split(t) return t:reshape { B, T, heads, hd }:permute { 1, 3, 2, 4 } end
  local q = split(own(att.query(x)) * (1 / math.sqrt(hd)))
  local k = split(own(att.key(x)))
  local v = split(own(att.value(x)))
  local probs = (q:matmul(k:transpose(3, 4)) + mask_bias):softmax(4)
  return probs:matmul(v):permute { 1, 3, 2, 4 }:reshape { B, T, H }
end

local padding = { { 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1 } }

describe("F.softmax_masked", function()
  for _, dt in ipairs { "f32", "f64", "bf16", "f16" } do
    it("equals softmax(x + mask) bit for bit in " .. dt, function()
      local x = dp.randn({ 2, 3, 5, 5 }, { seed = 7, dtype = dt }) * 3
      local pad = attention.additive_mask(ids(padding), dt)            -- (2, 1, 1, 5)
      local bias = dp.randn({ 1, 1, 1, 5 }, { seed = 8, dtype = dt })
      bias[{ 1, 1, 1, 2 }] = -1e4
      for _, mask in ipairs { pad, bias, dp.randn({ 5 }, { seed = 9, dtype = dt }) } do
        local want = (x + mask):softmax(4)
        assert_same(F.softmax_masked(x, mask), want, "default dim")
        assert_same(x:softmax_masked(mask, 4), want, "method, dim 4")
        assert_same(dp.softmax_masked(x, mask, -1), want, "dp., dim -1")
      end
    end)
  end

  it("has the gradient of the composed ops and leaves the mask alone", function()
    local mask = attention.additive_mask(ids(padding), "f64")
    local r = dp.randn({ 2, 3, 5, 5 }, { seed = 12, dtype = "f64" })
    local grads = {}
    for i, fused in ipairs { true, false } do
      local x = dp.randn({ 2, 3, 5, 5 }, { seed = 11, dtype = "f64" }):requires_grad_()
      local y = fused and F.softmax_masked(x, mask) or (x + mask):softmax(4)
      ;(y * r):sum():backward()
      grads[i] = x.grad
    end
    tu.assert_close(grads[1], grads[2], 1e-12)
    assert.is_nil(mask.grad)
  end)

  it("names the op, the argument and what was expected", function()
    local x = dp.randn({ 2, 3, 5, 5 }, { seed = 1 })
    local mask = attention.additive_mask(ids(padding), "f32")
    assert.error_matches(function() F.softmax_masked(x, mask, 3) end,
      "softmax_masked: dim (argument 3) must be the last dim", nil, true)
    assert.error_matches(function() F.softmax_masked(x, mask:double()) end,
      "softmax_masked: mask (argument 2) must have x's dtype f32", nil, true)
    assert.error_matches(function() F.softmax_masked(x, dp.zeros({ 2, 1, 1, 4 })) end,
      "softmax_masked: mask (argument 2)", nil, true)
    local g = dp.zeros({ 2, 1, 1, 5 }):requires_grad_()
    assert.error_matches(function() F.softmax_masked(x, g) end,
      "softmax_masked: mask (argument 2) requires grad", nil, true)
  end)
end)

describe("BertSelfAttention with a padding mask", function()
  local cfg = bert_config.check(tiny)
  local x64 = dp.randn({ 2, 5, 8 }, { seed = 21, dtype = "f64" })

  local function make(dt)
    local att = attention.BertSelfAttention.new { config = cfg, dtype = dt, rng = dp.rng(4) }
    for _, name in ipairs { "query", "key", "value" } do
      att[name].bias:copy(dp.randn({ 8 }, { seed = #name, dtype = dt }))
    end
    return att:eval()
  end

  for _, dt in ipairs { "f32", "bf16", "f64" } do
    it("gives the composed formula's output bit for bit in " .. dt, function()
      local att, x = make(dt), x64:cast(dt)
      local mask = attention.additive_mask(ids(padding), dt)
      assert_same(att(x, mask), composed(att, x, mask), dt)
    end)
  end

  it("gives the composed formula's output under a mixed-bf16 policy (mask cast at the boundary)", function()
    local att = precision.apply(make("f32"), "mixed-bf16")
    local x, mask = x64:float(), attention.additive_mask(ids(padding), "f32")
    local got = att(x, mask)
    assert.are.equal("bf16", got:dtype())
    assert_same(got, composed(att, x:cast("bf16"), mask:cast("bf16"), "bf16"), "mixed-bf16")
  end)

  it("promotes as before when the mask's dtype differs from the scores'", function()
    local att = make("f32")
    local x, mask = x64:float(), attention.additive_mask(ids(padding), "bf16")
    local got = att(x, mask)
    assert.are.equal("f32", got:dtype())
    assert_same(got, composed(att, x, mask), "f32 scores, bf16 mask")
  end)

  it("takes the fused op exactly when the mask has the scores' dtype", function()
    local methods = require("dp.tensor").methods
    local original, calls = methods.softmax_masked, 0
    methods.softmax_masked = function(...) calls = calls + 1; return original(...) end
    local ok, err = pcall(function()
      local att, x = make("f32"), x64:float()
      att(x, attention.additive_mask(ids(padding), "f32"))
      assert.are.equal(1, calls)
      att(x, attention.additive_mask(ids(padding), "bf16"))
      att(x)
      assert.are.equal(1, calls)
    end)
    methods.softmax_masked = original
    assert(ok, err)
  end)

  it("has the composed formula's gradients (f64)", function()
    local mask = attention.additive_mask(ids(padding), "f64")
    local r = dp.randn({ 2, 5, 8 }, { seed = 30, dtype = "f64" })
    local out = {}
    for i, fused in ipairs { true, false } do
      local att = make("f64")
      local x = x64:clone():requires_grad_()
      local y = fused and att(x, mask) or composed(att, x, mask)
      ;(y * r):sum():backward()
      out[i] = { x = x.grad, w = att.query.weight.grad }
    end
    tu.assert_close(out[1].x, out[2].x, 1e-12)
    tu.assert_close(out[1].w, out[2].w, 1e-12)
  end)
end)
