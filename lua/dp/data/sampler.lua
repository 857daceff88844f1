-- dp.data.sampler: which examples of a dataset of n form each logical batch, drawn from a
-- dp.privacy.noise generator.
--
--   local s = dp.data.sampler.poisson{ n = N, sample_rate = q, generator = gen }
--   s:next()          -- ascending 1-based indices, each example independently with prob. q
--                        (the batch may be empty; its size varies around q N)
--   local s = dp.data.sampler.shuffle{ n = N, batch_size = b, generator = gen }
--   s:next()          -- b indices: the next b of this epoch's permutation of 1..N; when fewer
--                        than b remain they are dropped and a new epoch draws a new permutation
--   s:sample_rate()   -- q, or b / N for shuffled batches (what the accountant is given)
--   s:sampling()      -- "poisson" or "shuffle"; s:generator() -- the noise generator
--
-- The accountant (dp.privacy.accountant) bounds the privacy loss of Poisson subsampling, which is
-- what the amplification-by-sampling analysis assumes (Abadi et al. 2016; Mironov, Talwar, Zhang
-- 2019). Shuffled fixed-size batches are common but that bound is not proven for them, so
-- creating a shuffle sampler prints a warning.
local native = require "dp.ffi"

local raise = native.raise

local M = {}

local function options(opts, fn)
  if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
  local gen = opts.generator
  if not require("dp.privacy.noise").is_noise(gen) then
    raise(("%s: generator must be a dp.privacy.noise generator, got %s"):format(fn, type(gen)))
  end
  local n = opts.n
  if type(n) ~= "number" or n < 1 or n > 2 ^ 53 or n % 1 ~= 0 then
    raise(("%s: n (the dataset size) must be an integer >= 1, got %s"):format(fn, tostring(n)))
  end
  return n, gen
end

-- ---------------------------------------------------------------- Poisson

local Poisson = {}
Poisson.__index = Poisson

function M.poisson(opts)
  local fn = "sampler.poisson"
  local n, gen = options(opts, fn)
  local q = opts.sample_rate
  if type(q) ~= "number" or not (q > 0 and q <= 1) then
    raise(("%s: sample_rate must be a number in (0, 1], got %s"):format(fn, tostring(q)))
  end
  return setmetatable({ n = n, q = q, gen = gen }, Poisson)
end

function Poisson:next() return self.gen:poisson(self.n, self.q) end
function Poisson:sample_rate() return self.q end
function Poisson:sampling() return "poisson" end
function Poisson:generator() return self.gen end

-- ---------------------------------------------------------------- shuffled fixed-size batches

local Shuffle = {}
Shuffle.__index = Shuffle

M.shuffle_warning = "dp.data.sampler.shuffle: warning: DP accounting assumes Poisson sampling; "
  .. "for shuffled fixed-size batches the reported epsilon is not a proven bound "
  .. "(use dp.data.sampler.poisson for a guarantee)\n"

function M.shuffle(opts)
  local fn = "sampler.shuffle"
  local n, gen = options(opts, fn)
  local b = opts.batch_size
  if type(b) ~= "number" or b < 1 or b > n or b % 1 ~= 0 then
    raise(("%s: batch_size must be an integer in [1, n = %d], got %s"):format(fn, n, tostring(b)))
  end
  io.stderr:write(M.shuffle_warning)
  return setmetatable({ n = n, b = b, gen = gen, perm = nil, pos = 0, epochs = 0 }, Shuffle)
end

function Shuffle:next()
  local n, b = self.n, self.b
  if self.perm == nil or self.pos + b > n then
    self.perm = self.gen:shuffle(n)
    self.pos = 0
    self.epochs = self.epochs + 1
  end
  local perm, pos, batch = self.perm, self.pos, {}
  for i = 1, b do batch[i] = perm[pos + i] end
  self.pos = pos + b
  return batch
end

function Shuffle:sample_rate() return self.b / self.n end
function Shuffle:sampling() return "shuffle" end
function Shuffle:generator() return self.gen end
-- Batches per epoch (the remainder of n / b is dropped), and epochs begun so far.
function Shuffle:steps_per_epoch() return math.floor(self.n / self.b) end
function Shuffle:epoch() return self.epochs end

return M
