-- Specs for memory: Lua's collector does not see C tensor storage, so dp.ffi collects when the
-- C side grows; a loop of big temporaries must stay bounded.
local dp = require "dp"

describe("dp memory", function()
  it("stays bounded in a loop allocating big tensors", function()
    dp.collectgarbage()
    local base = dp.memory()
    dp.C.dp_mem_reset_peak(0)
    local mib = 1024 * 1024
    for _ = 1, 100 do
      local t = dp.zeros({4 * mib}, "f32")   -- 16 MiB each, 1.6 GiB in all
      local _ = t + 1
    end
    local _, peak = dp.memory()
    -- The collector runs after 256 MiB of growth (or half the live size).
    assert.is_true(peak - base < 400 * mib, ("peak grew by %.0f MiB"):format((peak - base) / mib))
  end)

  it("frees every tensor once unreachable", function()
    dp.collectgarbage()
    local live = dp.live_tensors()
    for _ = 1, 50 do
      local x = dp.randn({8, 8}):requires_grad(true)
      local loss = (x:matmul(x):relu()):sum()
      loss:backward()
      local _ = tostring(x[{1, {1, 2}}])
    end
    dp.collectgarbage()
    assert.equal(live, dp.live_tensors())
    assert.equal(dp.memory(), dp.memory())
  end)

  it("releases early with :release() and does not release twice", function()
    dp.collectgarbage()
    local live = dp.live_tensors()
    local kept = dp.ones(3)
    for _ = 1, 1000 do
      local t = kept:detach()
      t:release()
    end
    assert.equal(live + 1, dp.live_tensors())
    dp.collectgarbage()
    assert.equal(live + 1, dp.live_tensors())
    assert.same({1, 1, 1}, kept:totable())
  end)

  it("collects on demand and honours a smaller step", function()
    dp.set_gc_step(32 * 1024 * 1024)
    dp.collectgarbage()
    local base = dp.memory()
    dp.C.dp_mem_reset_peak(0)
    for _ = 1, 40 do local _ = dp.zeros(1024 * 1024) end   -- 4 MiB each
    local _, peak = dp.memory()
    assert.is_true(peak - base < 64 * 1024 * 1024)
    dp.set_gc_step(256 * 1024 * 1024)
    dp.collectgarbage()
  end)
end)
