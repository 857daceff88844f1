-- Specs for dp.data.sampler: Poisson and shuffled logical batches over a dataset of n examples
-- (1-based indices), drawn from a dp.privacy.noise generator, and the shuffle warning.
local noise = require "dp.privacy.noise"
local sampler = require "dp.data.sampler"

-- Create a shuffle sampler with io.stderr replaced, returning it and what it wrote.
local function quiet_shuffle(opts)
  local written, real = {}, io.stderr
  io.stderr = { write = function(_, s) written[#written + 1] = s end }
  local ok, s = pcall(sampler.shuffle, opts)
  io.stderr = real
  if not ok then error(s, 0) end
  return s, table.concat(written)
end

describe("dp.data.sampler", function()
  describe("poisson", function()
    it("draws ascending 1-based indices with each example at rate q", function()
      local s = sampler.poisson{ n = 200, sample_rate = 0.05, generator = noise{ seed = 1 } }
      assert.equal(0.05, s:sample_rate())
      assert.equal("poisson", s:sampling())
      local hits, total, empty = {}, 0, 0
      for _ = 1, 2000 do
        local batch = s:next()
        if #batch == 0 then empty = empty + 1 end
        for i, x in ipairs(batch) do
          assert(x >= 1 and x <= 200 and x % 1 == 0)
          if i > 1 then assert(x > batch[i - 1]) end
          hits[x] = (hits[x] or 0) + 1
        end
        total = total + #batch
      end
      -- total ~ Binomial(400000, 0.05): mean 20000, sd ~138; per example Binomial(2000, 0.05):
      -- mean 100, sd ~9.7 (7 sd bounds across 200 examples).
      assert.is_true(math.abs(total - 20000) < 6 * 138)
      for i = 1, 200 do assert(math.abs((hits[i] or 0) - 100) < 7 * 9.75, i) end
    end)

    it("can give an empty batch", function()
      local s = sampler.poisson{ n = 10, sample_rate = 0.01, generator = noise{ seed = 3 } }
      local empty = 0
      for _ = 1, 50 do if #s:next() == 0 then empty = empty + 1 end end
      -- P(empty) = 0.99^10 ~ 0.904
      assert.is_true(empty > 30)
    end)

    it("follows its generator, so equal generators give equal batches", function()
      local a = sampler.poisson{ n = 1000, sample_rate = 0.1, generator = noise{ seed = 7 } }
      local b = sampler.poisson{ n = 1000, sample_rate = 0.1, generator = noise{ seed = 7 } }
      for _ = 1, 5 do assert.same(a:next(), b:next()) end
      assert.same(a:generator():state(), b:generator():state())
    end)

    it("rejects bad options", function()
      local gen = noise{ seed = 1 }
      assert.error_matches(function() sampler.poisson{ n = 10, sample_rate = 0, generator = gen } end,
        "sampler.poisson: sample_rate must be a number in (0, 1], got 0", nil, true)
      assert.error_matches(function() sampler.poisson{ n = 0, sample_rate = 0.1, generator = gen } end,
        "sampler.poisson: n (the dataset size) must be an integer >= 1, got 0", nil, true)
      assert.error_matches(function() sampler.poisson{ n = 10, sample_rate = 0.1 } end,
        "sampler.poisson: generator must be a dp.privacy.noise generator, got nil", nil, true)
      assert.error_matches(function() sampler.poisson(5) end, "sampler.poisson: expected a table of options", nil, true)
    end)
  end)

  describe("shuffle", function()
    it("warns once, on creation, that the accounting assumes Poisson sampling", function()
      local s, written = quiet_shuffle{ n = 10, batch_size = 3, generator = noise{ seed = 2 } }
      assert.truthy(written:find("DP accounting assumes Poisson sampling", 1, true))
      assert.truthy(written:find("not a proven bound", 1, true))
      local later = {}
      local real = io.stderr
      io.stderr = { write = function(_, m) later[#later + 1] = m end }
      local ok = pcall(function() for _ = 1, 10 do s:next() end end)
      io.stderr = real
      assert.is_true(ok)
      assert.same({}, later)
      assert.equal(0.3, s:sample_rate())
      assert.equal("shuffle", s:sampling())
    end)

    it("gives fixed-size batches from one permutation per epoch", function()
      local s = quiet_shuffle{ n = 10, batch_size = 3, generator = noise{ seed = 5 } }
      assert.equal(3, s:steps_per_epoch())
      for epoch = 1, 4 do
        local seen = {}
        for _ = 1, 3 do
          local batch = s:next()
          assert.equal(3, #batch)
          for _, x in ipairs(batch) do
            assert(x >= 1 and x <= 10 and not seen[x], "index repeated within an epoch")
            seen[x] = true
          end
        end
        assert.equal(epoch, s:epoch())
      end
    end)

    it("takes its permutations from the generator", function()
      local s = quiet_shuffle{ n = 6, batch_size = 2, generator = noise{ seed = 9 } }
      local perm = noise{ seed = 9 }:shuffle(6)
      assert.same({ perm[1], perm[2] }, s:next())
      assert.same({ perm[3], perm[4] }, s:next())
      assert.same({ perm[5], perm[6] }, s:next())
    end)

    it("rejects bad options", function()
      local gen = noise{ seed = 1 }
      assert.error_matches(function() quiet_shuffle{ n = 10, batch_size = 11, generator = gen } end,
        "sampler.shuffle: batch_size must be an integer in [1, n = 10], got 11", nil, true)
      assert.error_matches(function() quiet_shuffle{ n = 10, batch_size = 2, generator = {} } end,
        "sampler.shuffle: generator must be a dp.privacy.noise generator, got table", nil, true)
    end)
  end)
end)
