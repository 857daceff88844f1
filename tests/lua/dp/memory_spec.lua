-- Specs for dp.memory_report (lua/dp/memory.lua): bytes by category against the sizes of the
-- tensors made here, with_category restoring the thread's category (also on error), format, and
-- the tensor methods set_mem_category / mem_category.
local dp = require "dp"

local M = dp.memory_report

local function by_name(device)
  local out = {}
  for _, c in ipairs(M.categories(device)) do out[c.name] = c end
  return out
end

describe("dp.memory_report", function()
  it("lists the categories in enum order", function()
    local names = {}
    for i, c in ipairs(M.categories()) do names[i] = c.name end
    assert.are.same({ "other", "parameters", "master", "optimizer", "activations", "per_sample",
                      "gradients", "scratch" }, names)
  end)

  it("counts tensors made under a category, exactly", function()
    dp.collectgarbage()
    local before = by_name("cpu")
    local t = M.with_category("activations", function() return dp.zeros(1000) end)   -- f32
    local u = M.with_category("per_sample", dp.zeros, 10, 10, "f64")
    local now = by_name("cpu")
    assert.are.equal(4000, now.activations.current - before.activations.current)
    assert.are.equal(800, now.per_sample.current - before.per_sample.current)
    assert.are.equal("activations", t:mem_category())
    assert.are.equal("per_sample", u:mem_category())
    assert.is_true(now.activations.peak >= now.activations.current)
    -- moving keeps the device total
    local total = dp.memory("cpu")
    t:set_mem_category("gradients")
    assert.are.equal(total, (dp.memory("cpu")))
    assert.are.equal(4000, by_name("cpu").gradients.current - before.gradients.current)
    assert.are.equal(before.activations.current, by_name("cpu").activations.current)
    t:release(); u:release()
    assert.are.equal(before.gradients.current, by_name("cpu").gradients.current)
  end)

  it("restores the previous category after fn, also when fn raises", function()
    assert.are.equal("other", dp.zeros(1):mem_category())
    local ok, err = pcall(M.with_category, "optimizer", function() error("boom") end)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.are.equal("other", dp.zeros(1):mem_category())
    local a, b = M.with_category("master", function(x, y)
      return M.with_category("optimizer", function() return dp.zeros(1):mem_category() end) .. x, y
    end, "!", 2)
    assert.are.same({ "optimizer!", 2 }, { a, b })
    assert.are.equal("other", dp.zeros(1):mem_category())
  end)

  it("rejects unknown names", function()
    assert.error_matches(function() M.with_category("weights", print) end,
      "memory_report.with_category: unknown memory category weights", nil, true)
    assert.error_matches(function() dp.zeros(1):set_mem_category("x") end,
      "set_mem_category: unknown memory category x", nil, true)
    assert.error_matches(function() M.format("cpu", "max") end, "which must be", nil, true)
  end)

  it("formats nonzero categories in MiB", function()
    local t = M.with_category("master", dp.zeros, 3 * 2 ^ 18)   -- 3 MiB of f32
    local line = M.format("cpu")
    assert.matches("master 3%.0", line)
    assert.matches(" MiB$", line)
    assert.is_nil(line:find("scratch", 1, true))   -- no GEMM holds scratch between ops
    t:release()
  end)
end)
