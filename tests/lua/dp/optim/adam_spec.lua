-- Specs for dp.optim.adam and dp.optim.adamw: updates against a pure-Lua f64 reference of the
-- formulas (L2 vs decoupled weight decay, bias correction with per-parameter step counts),
-- convergence on an ill-conditioned quadratic, options, and state_dict round trips.
local dp = require "dp"
local tu = require "testutil"

local function grad_values(n, t, salt)
  local out = {}
  for i = 1, n do out[i] = math.cos(i * 2.3 + t * 0.7 + salt) * (0.5 + 0.2 * t) end
  return out
end

-- Pure-Lua Adam/AdamW, f64, one step of one parameter; st = { m, v, t }.
local function ref_adam(o, decoupled, p, g, st)
  local lr, b1, b2 = o.lr or 1e-3, (o.betas or { 0.9, 0.999 })[1], (o.betas or { 0.9, 0.999 })[2]
  local eps, wd = o.eps or 1e-8, o.weight_decay or (decoupled and 0.01 or 0)
  st.t = (st.t or 0) + 1
  st.m, st.v = st.m or {}, st.v or {}
  for i = 1, #p do
    local gi = g[i]
    if decoupled then p[i] = p[i] * (1 - lr * wd) else gi = gi + wd * p[i] end
    st.m[i] = b1 * (st.m[i] or 0) + (1 - b1) * gi
    st.v[i] = b2 * (st.v[i] or 0) + (1 - b2) * gi * gi
    local mhat, vhat = st.m[i] / (1 - b1 ^ st.t), st.v[i] / (1 - b2 ^ st.t)
    p[i] = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
  end
end

local function run_case(kind, opts, dt, tol)
  local w = dp.tensor({ { 0.5, -1, 2 }, { 0.25, 3, -0.75 } }, { dtype = dt, requires_grad = true })
  local b = dp.tensor({ 0.1, -0.2, 0.3 }, { dtype = dt, requires_grad = true })
  local opt = dp.optim[kind]({ { name = "w", tensor = w }, { name = "b", tensor = b } }, opts)
  local rw, rb = { p = tu.values(w), st = {} }, { p = tu.values(b), st = {} }
  for t = 1, 5 do
    local gw = grad_values(6, t, 0)
    w.grad = dp.tensor({ { gw[1], gw[2], gw[3] }, { gw[4], gw[5], gw[6] } }, dt)
    ref_adam(opts, kind == "adamw", rw.p, tu.values(w.grad), rw.st)
    -- b is frozen for step 2 (no gradient): its own step count falls behind w's
    if t ~= 2 then
      b.grad = dp.tensor(grad_values(3, t, 4), dt)
      ref_adam(opts, kind == "adamw", rb.p, tu.values(b.grad), rb.st)
    else
      b:zero_grad()
      b:requires_grad(false)
    end
    opt:step()
    b:requires_grad(true)
    tu.assert_close(w, rw.p, tol)
    tu.assert_close(b, rb.p, tol)
  end
  local s = opt:state_dict()
  tu.assert_close(s.state.w.m, rw.st.m, tol)
  tu.assert_close(s.state.w.v, rw.st.v, tol)
  assert.equal(5, s.state.w.step)
  assert.equal(4, s.state.b.step)
end

describe("dp.optim.adam", function()
  describe("step", function()
    local cases = {
      { "adam", "defaults", {} },
      { "adam", "l2 weight decay", { lr = 0.01, betas = { 0.8, 0.99 }, eps = 1e-6, weight_decay = 0.1 } },
      { "adamw", "defaults (weight decay 0.01)", { lr = 0.05 } },
      { "adamw", "decoupled weight decay", { lr = 0.02, betas = { 0.5, 0.9 }, weight_decay = 0.3 } },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " " .. c[2] .. " matches the f64 reference (f64 and f32 params)", function()
        run_case(c[1], c[3], "f64", 1e-13)
        run_case(c[1], c[3], "f32", 2e-6)
      end)
    end

    it("converges to the minimum of an ill-conditioned quadratic", function()
      -- f(x) = sum a_i (x_i - c_i)^2 / 2 with curvatures 1 .. 100, minimum at c. Adam's steps
      -- scale per coordinate, so all three reach c to 1e-8 within 500 steps at lr 0.05.
      local c = dp.tensor({ 1.5, -2, 0.25 }, "f64")
      local a = dp.tensor({ 1, 10, 100 }, "f64")
      local x = dp.zeros(3, { dtype = "f64", requires_grad = true })
      local opt = dp.optim.adam({ x = x }, { lr = 0.05 })
      for _ = 1, 500 do
        opt:zero_grad()
        local d = x - c
        local loss = (d * d * a):sum() * 0.5
        loss:backward()
        opt:step()
      end
      tu.assert_close(x, { 1.5, -2, 0.25 }, 1e-8)
    end)

    it("adamw shrinks a parameter with zero gradient by (1 - lr * wd) per step", function()
      local w = dp.tensor({ 2, -4 }, { dtype = "f64", requires_grad = true })
      local opt = dp.optim.adamw({ w }, { lr = 0.1, weight_decay = 0.5 })
      for _ = 1, 3 do
        w.grad = dp.zeros(2, "f64")
        opt:step()
      end
      tu.assert_close(w, { 2 * 0.95 ^ 3, -4 * 0.95 ^ 3 }, 1e-15)
    end)

    it("names the parameter that has no gradient", function()
      local opt = dp.optim.adamw({ ["enc.ln.weight"] = dp.ones(3, { requires_grad = true }) })
      assert.error_matches(function() opt:step() end, "dp.optim.adamw: parameter 'enc.ln.weight' [3] f32 cpu has no gradient",
                           nil, true)
    end)
  end)

  describe("options", function()
    it("has PyTorch's defaults", function()
      local s = dp.optim.adam({ dp.ones(1) }):state_dict()
      assert.same({ lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 }, s.hyper)
      assert.equal(0.01, dp.optim.adamw({ dp.ones(1) }):state_dict().hyper.weight_decay)
    end)

    it("rejects bad values naming them", function()
      local w = dp.ones(2)
      local cases = {
        { { betas = { 1, 0.999 } }, "dp.optim.adam: betas[1] must be a finite number in [0, 1), got 1" },
        { { betas = { 0.9 } }, "betas must be a table {beta1, beta2}" },
        { { betas = { 0.9, -1 } }, "betas[2] must be a finite number in [0, 1), got -1" },
        { { eps = 0 }, "eps must be a finite number > 0, got 0" },
        { { lr = -1 }, "lr must be a finite number >= 0, got -1" },
        { { weight_decay = 1 / 0 }, "weight_decay must be a finite number >= 0, got inf" },
        { { beta1 = 0.9 }, "unknown option beta1 (expected lr, betas, eps, weight_decay)" },
      }
      for _, c in ipairs(cases) do
        assert.error_matches(function() dp.optim.adam({ w }, c[1]) end, c[2], nil, true)
      end
    end)
  end)

  describe("state_dict", function()
    local function model()
      return { w = dp.tensor({ { 1, 2 }, { 3, 4 } }, { requires_grad = true }),
               b = dp.tensor({ -1, 0.5 }, { dtype = "bf16", requires_grad = true }) }
    end
    local function grads(m, t)
      local g = grad_values(4, t, 1)
      m.w.grad = dp.tensor({ { g[1], g[2] }, { g[3], g[4] } })
      m.b.grad = dp.tensor(grad_values(2, t, 2))
    end

    it("continues bit-identically after a save and load (f32 and bf16 params)", function()
      local opts = { lr = 0.01, weight_decay = 0.05 }
      local full, resumed = model(), model()
      local opt_full, opt_first = dp.optim.adamw(full, opts), dp.optim.adamw(resumed, opts)
      for t = 1, 3 do
        grads(full, t); opt_full:step()
        grads(resumed, t); opt_first:step()
      end
      local saved = opt_first:state_dict()
      assert.equal("adamw", saved.kind)
      assert.equal(3, saved.state.b.step)
      assert.equal("f32", saved.state.b.m:dtype())   -- fp32 state for a bf16 parameter
      local copy = { w = dp.tensor(resumed.w, { requires_grad = true }), b = dp.tensor(resumed.b, { requires_grad = true }) }
      local opt = dp.optim.adamw(copy)
      opt:load_state_dict(saved)
      for t = 4, 6 do
        grads(full, t); opt_full:step()
        grads(copy, t); opt:step()
      end
      assert.same(full.w:totable(), copy.w:totable())
      assert.same(full.b:totable(), copy.b:totable())
    end)

    it("rejects inconsistent or mismatched state", function()
      local m = model()
      local opt = dp.optim.adam(m)
      grads(m, 1)
      opt:step()
      local saved = opt:state_dict()
      assert.error_matches(function() dp.optim.adamw(model()):load_state_dict(saved) end,
        "dp.optim.adamw:load_state_dict: the state is for adam, this optimizer is adamw", nil, true)
      saved.state.w.v = nil
      assert.error_matches(function() dp.optim.adam(model()):load_state_dict(saved) end,
        "parameter 'w': m, v and step >= 1 go together (got m set, v missing, step 1)", nil, true)
      saved.state.w = nil
      assert.error_matches(function() dp.optim.adam(model()):load_state_dict(saved) end,
        "the state has no entry for parameter 'w'", nil, true)
      local s2 = opt:state_dict()
      s2.state.b.m = dp.zeros(2, "f64")
      assert.error_matches(function() dp.optim.adam(model()):load_state_dict(s2) end,
        "parameter 'b': m is [2] f64 cpu, expected its shape in f32 (the parameter is [2] bf16 cpu)", nil, true)
    end)
  end)
end)
