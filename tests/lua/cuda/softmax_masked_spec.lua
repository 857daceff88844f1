-- CUDA parity of dp.softmax_masked (the fused softmax(x + mask) of BERT's attention): forward and
-- x's gradient against the CPU for a padding mask (B,1,1,T), a shared bias row and a full mask,
-- and on the GPU itself the contract softmax_masked(x, mask) == softmax(x + mask) bit for bit.
-- Skipped, with the reason, without a CUDA device (DP_PARITY_SELFTEST=1 runs it CPU against CPU).
local dp = require "dp"
local attention = require "dp.nn.attention"
local parity = require "cuda.parity"

local function randn(shape, seed, dtype, std)
  local x = dp.randn(shape, { seed = seed, std = std or 1, device = "cpu" })
  return x:cast(dtype):detach()
end

-- (B, T) = (3, 37): rows of 37 keys, a length no warp divides; example b pads its last 4b keys.
local B, H, T = 3, 4, 37
local function masks(dtype)
  local rows = {}
  for b = 1, B do
    rows[b] = {}
    for t = 1, T do rows[b][t] = t <= T - 4 * (b - 1) and 1 or 0 end
  end
  local full = randn({ B, H, T, T }, 5, dtype)
  full[{ 1, 2, 3, 4 }] = -1e4
  return {
    pad = attention.additive_mask(dp.tensor(rows, "i64"), dtype),
    shared = randn({ 1, 1, 1, T }, 6, dtype),
    full = full,
  }
end

parity.describe("cuda parity: softmax_masked", function()
  for _, dt in ipairs { "f32", "bf16", "f16", "f64" } do
    it("matches the CPU and softmax(x + mask) on the GPU in " .. dt, function()
      local x = randn({ B, H, T, T }, 4, dt, 3)
      for name, mask in pairs(masks(dt)) do
        local what = ("softmax_masked %s mask %s"):format(dt, name)
        local cx, gx = x:clone():requires_grad_(), parity.gpu(x):requires_grad_()
        local gm = parity.gpu(mask)
        local ref, got = dp.softmax_masked(cx, mask), dp.softmax_masked(gx, gm)
        parity.assert_close(got, ref, what)
        parity.assert_equal(got, (gx:detach() + gm):softmax(4), what .. " vs add + softmax on the GPU")
        local w = randn({ B, H, T, T }, 7, dt)
        dp.sum(ref * w):backward()
        dp.sum(got * parity.gpu(w)):backward()
        parity.assert_close(gx.grad, cx.grad, what .. " backward")
      end
    end)
  end
end)
