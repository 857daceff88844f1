-- Specs for dp.repl sessions fed line by line (no terminal): multi-line chunks, printed values,
-- errors that keep the session, locals in scope with write-back, and the helpers' numbers
-- (privacy() against the accountant; the inspection note once and in the ledger).
local dp = require "dp"
local repl = require "dp.repl"
local env_mod = require "dp.repl.env"
local accountant = require "dp.privacy.accountant"

local function session(frames)
  local out, err = {}, {}
  local s = repl.session{ frames = frames, out = function(l) out[#out + 1] = l end,
                          err = function(l) err[#err + 1] = l end }
  return s, out, err
end

local function tiny_run()
  local env = setmetatable({ arg = {} }, { __index = _G })
  local chunk = assert(loadfile("tests/lua/dp/repl/tiny_run.lua"))
  setfenv(chunk, env)
  chunk()
  return env
end

describe("dp.repl", function()
  it("prints expressions, reads multi-line chunks and survives errors", function()
    local s, out, err = session()
    s:feed("1 + 2")
    s:feed("for i = 1, 2 do")
    assert.equal(">> ", s:prompt())
    s:feed("repl_spec_sum = (repl_spec_sum or 0) + i end")
    s:feed("error('boom')")
    s:feed("repl_spec_sum")
    assert.same({ "3", "3" }, out)
    assert.truthy(err[1]:find("boom", 1, true))
    assert.equal("dp> ", s:prompt())
    repl_spec_sum = nil
  end)

  it("reads and writes a live frame's locals", function()
    local answer = 41
    local s, out = session({ env_mod.capture(1) })
    s:feed("answer")
    s:feed("answer = answer + 1")
    assert.same({ "41" }, out)
    assert.equal(42, answer)
  end)

  it("shows tensors with a shape line", function()
    local s, out = session({ { values = { dp = { dp } } } })
    s:feed("dp.tensor({{1, 2}, {3, 4}})")
    assert.equal("[[1., 2.],\n [3., 4.]]\n[2x2] f32 cpu", out[1])
  end)

  it("projects epsilon as the accountant does", function()
    local env = tiny_run()
    local s = session()
    env.priv:step()
    env.priv:step()
    local r = s.helpers.privacy(env.priv)
    local spent = accountant.epsilon{ q = 0.5, sigma = 1.0, steps = 2, delta = 1e-5 }.epsilon
    assert.near(spent, r.epsilon, 1e-9 * spent)
    local r10 = require("dp.repl.helpers").privacy(env.priv, { steps = 10 })
    local want = accountant.epsilon{ q = 0.5, sigma = 1.0, steps = 10, delta = 1e-5 }.epsilon
    assert.near(want, r10.projected_epsilon, 1e-9 * want)
    assert.truthy(tostring(r10):find("projected epsilon", 1, true))
  end)

  it("notes raw statistics once and records the inspection in the ledger", function()
    local env = tiny_run()
    env.priv:step()
    local s, out = session()
    local before = env.priv.ledger:inspections()
    local r = s.helpers.persample(env.priv)
    s.helpers.persample(env.priv)
    local notes = 0
    for _, l in ipairs(out) do if l:find("not differentially private", 1, true) then notes = notes + 1 end end
    assert.equal(1, notes)
    assert.equal(before + 1, env.priv.ledger:inspections())
    -- The overall norms are those the engine holds; the fraction clipped matches max_grad_norm.
    local norms = env.priv.engine:sample_norms(nil)
    local clipped = 0
    for _, v in ipairs(norms) do if v > 0.5 then clipped = clipped + 1 end end
    table.sort(norms)
    assert.equal(norms[1], r.overall.min)
    assert.equal(norms[#norms], r.overall.max)
    assert.near(clipped / #norms, r.overall.clipped, 1e-12)
  end)
end)
