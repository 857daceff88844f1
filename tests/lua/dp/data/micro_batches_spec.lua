-- Specs for dp.data.micro_batches: splits cover every index once and in order, respect the size
-- cap, and, once the memory per example is learned, keep a simulated peak under the memory cap.
local micro_batches = require "dp.data.micro_batches"

-- Concatenation of the parts, and whether every part is non-empty and at most `most` long.
local function flatten(parts, most)
  local out, ok = {}, true
  for _, part in ipairs(parts) do
    ok = ok and #part >= 1 and #part <= most
    for _, v in ipairs(part) do out[#out + 1] = v end
  end
  return out, ok
end

local function sizes(parts)
  local out = {}
  for i, part in ipairs(parts) do out[i] = #part end
  return out
end

-- A Poisson-like batch: a sorted subset of 1..n from an LCG (independent of the library).
local function random_batch(n, seed)
  local out, state = {}, seed
  for i = 1, n do
    state = (state * 1103515245 + 12345) % 2147483648
    if state % 3 == 0 then out[#out + 1] = i end
  end
  return out
end

local function range(n)
  local out = {}
  for i = 1, n do out[i] = i end
  return out
end

describe("dp.data.micro_batches", function()
  describe("split", function()
    it("keeps the whole batch without caps, and gives nothing for an empty batch", function()
      local p = micro_batches.planner{}
      local batch = random_batch(200, 3)
      assert.are.same({ batch }, p:split(batch))
      assert.are.same({}, p:split({}))
    end)

    it("covers every index once, in order, under max_physical_batch_size", function()
      for _, case in ipairs{ { n = 150, max = 64 }, { n = 64, max = 64 }, { n = 1, max = 8 }, { n = 97, max = 1 } } do
        local batch = {}
        for i = 1, case.n do batch[i] = 1000 + 7 * i end
        local parts = micro_batches.planner{ max_physical_batch_size = case.max }:split(batch)
        local flat, ok = flatten(parts, case.max)
        assert.are.same(batch, flat)
        assert.is_true(ok)
        assert.are.equal(math.ceil(case.n / case.max), #parts)
      end
      assert.are.same({ 64, 64, 22 }, sizes(micro_batches.planner{ max_physical_batch_size = 64 }:split(range(150))))
    end)

    it("holds on random batches", function()
      for seed = 1, 20 do
        local batch = random_batch(40 + seed * 13, seed)
        local parts = micro_batches.planner{ max_physical_batch_size = 7 }:split(batch)
        local flat, ok = flatten(parts, 7)
        assert.are.same(batch, flat)
        assert.is_true(ok)
      end
    end)
  end)

  describe("observe", function()
    local base = 3e9

    it("sizes micro-batches from the largest bytes per example, with a 1.1 margin", function()
      local cap = base + 50000
      local p = micro_batches.planner{ max_physical_batch_size = 64, memory_cap_bytes = cap }
      assert.are.equal(64, p:physical_size(1000))          -- no observation yet: the size cap
      p:observe(10, base + 10 * 1000, base)
      assert.are.equal(1000, p:bytes_per_example())
      assert.are.equal(math.floor(50000 / 1100), p:physical_size(1000))   -- 45
      p:observe(5, base + 5 * 1500, base)
      p:observe(20, base + 20 * 500, base)                 -- smaller: the largest is kept
      assert.are.equal(1500, p:bytes_per_example())
      assert.are.equal(math.floor(50000 / 1650), p:physical_size(1000))   -- 30
      assert.are.same({ 30, 30, 30, 10 }, sizes(p:split(range(100))))
    end)

    it("never exceeds max_physical_batch_size, and uses the whole batch without one", function()
      local p = micro_batches.planner{ max_physical_batch_size = 20, memory_cap_bytes = base + 1e6 }
      p:observe(4, base + 4000, base)
      assert.are.equal(20, p:physical_size(500))
      local q = micro_batches.planner{ memory_cap_bytes = base + 1e6 }
      assert.are.equal(77, #q:split(range(77))[1])   -- before observing: one part
      q:observe(4, base + 4000, base)
      assert.are.equal(math.floor(1e6 / 1100), q:physical_size(5000))
    end)

    it("keeps a simulated peak under the cap", function()
      -- memory model: peak(k) = base + k * true_per, true_per varying by batch below the largest seen
      local cap = base + 123457
      local p = micro_batches.planner{ max_physical_batch_size = 512, memory_cap_bytes = cap }
      p:observe(8, base + 8 * 977, base)
      for seed = 1, 10 do
        for _, part in ipairs(p:split(random_batch(1200, seed))) do
          local true_per = 977 * (1 + 0.09 * ((seed * 7) % 10) / 10)
          assert.is_true(base + #part * true_per <= cap)
        end
      end
    end)

    it("fails clearly when one example cannot fit", function()
      local p = micro_batches.planner{ memory_cap_bytes = base + 1000 }
      p:observe(2, base + 2000, base)
      assert.error_matches(function() p:split({ 1, 2, 3 }) end,
        "micro_batches: memory_cap_bytes = 3000001000 leaves 1000 bytes above the base of 3000000000, " ..
        "less than one example needs (1000 bytes measured x 1.1 safety = 1100)", nil, true)
      local q = micro_batches.planner{ memory_cap_bytes = 100 }
      q:observe(1, 250, 200)
      assert.error_matches(function() q:physical_size(3) end, "leaves -100 bytes above the base of 200", nil, true)
    end)

    it("rejects bad arguments", function()
      assert.error_matches(function() micro_batches.planner{ max_physical_batch_size = 0 } end,
        "max_physical_batch_size must be an integer >= 1, got 0", nil, true)
      assert.error_matches(function() micro_batches.planner{ max_physical_batch_size = 2.5 } end,
        "max_physical_batch_size must be an integer >= 1, got 2.5", nil, true)
      assert.error_matches(function() micro_batches.planner{ memory_cap_bytes = -1 } end,
        "memory_cap_bytes must be a finite number > 0, got -1", nil, true)
      local p = micro_batches.planner{}
      assert.error_matches(function() p:observe(0, 10, 0) end, "n_examples an integer >= 1, got 0", nil, true)
      assert.error_matches(function() p:observe(2, 5, 10) end, "peak_bytes a finite number >= base_bytes (10), got 5", nil, true)
      assert.error_matches(function() p:observe(2, 5, -1) end, "base_bytes a finite number >= 0, got -1", nil, true)
      assert.error_matches(function() p:split("1,2") end, "split expects an array of example indices, got string", nil, true)
    end)
  end)
end)
