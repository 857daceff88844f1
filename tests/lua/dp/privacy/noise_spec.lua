-- Specs for dp.privacy.noise: the DP noise generators through the FFI (the C tests pin down the
-- streams and distributions; here: the Lua API, 1-based indices, state and errors).
local dp = require "dp"
local noise = require "dp.privacy.noise"

local function mean_var(xs)
  local s, n = 0, #xs
  for _, x in ipairs(xs) do s = s + x end
  local m, v = s / n, 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, v / (n - 1)
end

describe("dp.privacy.noise", function()
  it("is reachable as dp.privacy.noise", function()
    local gen = dp.privacy.noise{ seed = 1 }
    assert.equal("reproducible", gen:mode())
  end)

  describe("reproducible mode", function()
    it("repeats its draws for the same seed, stream and counter", function()
      local a = noise{ seed = 5, stream = 2, counter = 10 }
      local b = noise{ seed = 5, stream = 2, counter = 10 }
      assert.same(a:normals(7), b:normals(7))
      assert.are_not.same(noise{ seed = 5, stream = 3 }:normals(4), noise{ seed = 5, stream = 2 }:normals(4))
    end)

    it("reports its state, the counter in blocks of two draws", function()
      local gen = noise{ seed = 9, stream = 4, counter = 3 }
      assert.same({ mode = "reproducible", seed = 9, stream = 4, counter = 3 }, gen:state())
      gen:normals(5)
      assert.equal(6, gen:state().counter)
      gen:uniforms(2)
      assert.equal(7, gen:state().counter)
      -- A generator rebuilt from the state continues the stream.
      local s = gen:state()
      local copy = noise{ seed = s.seed, stream = s.stream, counter = s.counter }
      assert.same(gen:normals(4), copy:normals(4))
      assert.truthy(tostring(gen):find("dp.privacy.noise(mode=reproducible, seed=9, stream=4", 1, true))
    end)

    it("takes 64-bit seeds as cdata", function()
      local gen = noise{ seed = 0xfedcba9876543210ULL }
      assert.equal(0xfedcba9876543210ULL, gen:state().seed)
    end)

    it("adds std * z to a tensor in place, z being its normals", function()
      local t = dp.tensor({ 1, 2, 3, 4, 5 }, "f64")
      local z = noise{ seed = 3 }:normals(5)
      assert.equal(t, noise{ seed = 3 }:add_(t, 0.5))
      local v = t:totable()
      for i = 1, 5 do assert.equal(i + 0.5 * z[i], v[i]) end
    end)
  end)

  describe("draws", function()
    it("gives uniforms in (0, 1) and normals with the right moments", function()
      local gen = noise{ seed = 11 }
      local u = gen:uniforms(20000)
      local m, v = mean_var(u)
      for _, x in ipairs(u) do assert(x > 0 and x < 1) end
      -- 6 standard errors: sd of the mean sqrt(1/12/n), of the variance about sqrt(1/180/n)
      assert.is_true(math.abs(m - 0.5) < 6 * math.sqrt(1 / 12 / 20000))
      assert.is_true(math.abs(v - 1 / 12) < 6 * math.sqrt(1 / 180 / 20000))
      m, v = mean_var(gen:normals(20000))
      assert.is_true(math.abs(m) < 6 / math.sqrt(20000))
      assert.is_true(math.abs(v - 1) < 6 * math.sqrt(2 / 20000))
      assert.same({}, gen:normals(0))
    end)

    it("samples 1-based ascending indices, all of them at q = 1 and none at q = 0", function()
      local gen = noise{ seed = 2 }
      local all = gen:poisson(10, 1)
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, all)
      assert.same({}, gen:poisson(10, 0))
      assert.same({}, gen:poisson(0, 0.5))
      local total = 0
      for _ = 1, 200 do
        local idx = gen:poisson(100, 0.1)
        for i, x in ipairs(idx) do
          assert(x >= 1 and x <= 100 and x % 1 == 0)
          if i > 1 then assert(x > idx[i - 1]) end
        end
        total = total + #idx
      end
      -- 200 batches of Binomial(100, 0.1): total mean 2000, sd sqrt(1800) ~ 42.
      assert.is_true(math.abs(total - 2000) < 6 * math.sqrt(1800))
    end)

    it("retries when a sample outgrows its first buffer", function()
      local first = noise.initial_capacity
      noise.initial_capacity = function() return 2 end
      local a, b = noise{ seed = 8 }, noise{ seed = 8 }
      local ok, x = pcall(a.poisson, a, 500, 0.3)
      noise.initial_capacity = first
      assert.is_true(ok, x)
      local y = b:poisson(500, 0.3)
      assert.is_true(#x > 100)
      assert.same(y, x)
      assert.same(b:state(), a:state())
    end)

    it("shuffles into a permutation of 1..n", function()
      local p = noise{ seed = 4 }:shuffle(50)
      local seen = {}
      for _, x in ipairs(p) do
        assert(x >= 1 and x <= 50 and not seen[x])
        seen[x] = true
      end
      assert.equal(50, #p)
      assert.same({}, noise{ seed = 4 }:shuffle(0))
    end)
  end)

  describe("secure mode", function()
    it("differs between generators and keeps its key to itself", function()
      local a, b = noise{ mode = "secure", stream = 3 }, noise{ mode = "secure", stream = 3 }
      assert.equal("secure", a:mode())
      assert.are_not.same(a:normals(4), b:normals(4))
      assert.same({ mode = "secure", seed = 0, stream = 3, counter = 2 }, a:state())
      -- seed and counter are ignored: a fresh key, position 0
      assert.same({ mode = "secure", seed = 0, stream = 1, counter = 0 },
                  noise{ mode = "secure", seed = 5, counter = 9 }:state())
      local t = dp.zeros({ 1000 }, "f32")
      a:add_(t, 2)
      local m, v = mean_var(t:totable())
      assert.is_true(math.abs(m) < 6 * 2 / math.sqrt(1000))
      assert.is_true(math.abs(v - 4) < 6 * 4 * math.sqrt(2 / 1000))
    end)
  end)

  describe("errors", function()
    it("names the argument and what was expected", function()
      assert.error_matches(function() noise{ mode = "fast" } end,
        'noise: mode must be "reproducible" or "secure", got fast', nil, true)
      assert.error_matches(function() noise{ seed = -1 } end,
        "noise: seed must be an integer in [0, 2^53] or uint64 cdata", nil, true)
      local gen = noise{ seed = 1 }
      assert.error_matches(function() gen:normals(-1) end, "noise:normals: n must be an integer >= 0", nil, true)
      assert.error_matches(function() gen:poisson(10, 1.5) end, "poisson_sample: q must be in [0, 1], got 1.5", nil, true)
      assert.error_matches(function() gen:poisson(10, "x") end, "noise:poisson: q must be a number", nil, true)
      assert.error_matches(function() gen:add_(dp.zeros({ 3 }, "f64"), -1) end,
        "noise_add_: std must be finite and >= 0, got -1", nil, true)
      assert.error_matches(function() gen:add_({}, 1) end, "noise:add_: argument 1 is a table, expected a tensor", nil, true)
      assert.error_matches(function() gen:add_(dp.zeros({ 3 }, "i32"), 1) end, "noise_add_: dst must be f32 or f64", nil, true)
      assert.error_matches(function() gen.normals({}, 3) end, "expected a noise generator as self", nil, true)
      assert.equal(0, gen:state().counter)
    end)
  end)
end)
