-- Specs for dp.optim.sgd (and the shared dp.optim.optimizer): updates against a pure-Lua f64
-- reference of PyTorch's SGD, convergence on a quadratic, the parameter forms and their names,
-- errors naming the parameter or option, and state_dict round trips that continue bit for bit.
local dp = require "dp"
local tu = require "testutil"

-- Deterministic gradient values for step t of a parameter with n elements.
local function grad_values(n, t, salt)
  local out = {}
  for i = 1, n do out[i] = math.sin(i * 1.7 + t * 0.9 + salt) * (1 + 0.3 * t) end
  return out
end

-- Pure-Lua SGD, f64: p, buf arrays updated in place (buf nil until the first step).
local function ref_sgd(o, p, g, st)
  local mom, damp, wd = o.momentum or 0, o.dampening or 0, o.weight_decay or 0
  for i = 1, #p do
    local gi = g[i] + wd * p[i]
    local s = gi
    if mom ~= 0 then
      if st.buf == nil then st.buf = {} end
      st.buf[i] = st.first_done and mom * st.buf[i] + (1 - damp) * gi or gi
      s = o.nesterov and gi + mom * st.buf[i] or st.buf[i]
    end
    p[i] = p[i] - o.lr * s
  end
  st.first_done = true
end

local function run_case(opts, dt, tol)
  local w = dp.tensor({ { 0.5, -1, 2 }, { 0.25, 3, -0.75 } }, { dtype = dt, requires_grad = true })
  local b = dp.tensor({ 0.1, -0.2, 0.3 }, { dtype = dt, requires_grad = true })
  local opt = dp.optim.sgd({ w = w, b = b }, opts)
  local ref = { b = { p = tu.values(b), st = {} }, w = { p = tu.values(w), st = {} } }
  for t = 1, 4 do
    local gw, gb = grad_values(6, t, 0), grad_values(3, t, 5)
    w.grad = dp.tensor({ { gw[1], gw[2], gw[3] }, { gw[4], gw[5], gw[6] } }, dt)
    b.grad = dp.tensor(gb, dt)
    -- the reference sees the gradients as stored (rounded to dt)
    ref_sgd(opts, ref.w.p, tu.values(w.grad), ref.w.st)
    ref_sgd(opts, ref.b.p, tu.values(b.grad), ref.b.st)
    opt:step()
    tu.assert_close(w, ref.w.p, tol)
    tu.assert_close(b, ref.b.p, tol)
  end
  return opt
end

describe("dp.optim.sgd", function()
  it("is reachable from require \"dp\"", function()
    assert.equal(require("dp.optim").sgd, dp.optim.sgd)
  end)

  describe("step", function()
    local cases = {
      plain = { lr = 0.1 },
      momentum = { lr = 0.1, momentum = 0.9, dampening = 0.25 },
      nesterov = { lr = 0.05, momentum = 0.9, nesterov = true },
      ["weight decay"] = { lr = 0.1, momentum = 0.5, weight_decay = 0.1 },
    }
    for name, opts in pairs(cases) do
      it(name .. " matches the f64 reference (f64 and f32 params)", function()
        run_case(opts, "f64", 1e-13)
        run_case(opts, "f32", 2e-6)
      end)
    end

    it("converges to the minimum of a quadratic", function()
      -- f(x) = sum a_i (x_i - c_i)^2 / 2, minimum at c; the gradient comes from autograd
      local c = dp.tensor({ 1.5, -2, 0.25 }, "f64")
      local a = dp.tensor({ 1, 4, 0.5 }, "f64")
      local x = dp.zeros(3, { dtype = "f64", requires_grad = true })
      local opt = dp.optim.sgd({ x }, { lr = 0.1, momentum = 0.8 })
      for _ = 1, 300 do
        opt:zero_grad()
        local d = x - c
        local loss = (d * d * a):sum() * 0.5
        loss:backward()
        opt:step()
      end
      tu.assert_close(x, { 1.5, -2, 0.25 }, 1e-9)
    end)

    it("names the parameter that has no gradient, and changes nothing", function()
      local w = dp.ones(2, { requires_grad = true })
      local b = dp.ones(2, { requires_grad = true })
      local opt = dp.optim.sgd({ { name = "fc.weight", tensor = w }, { name = "fc.bias", tensor = b } }, { lr = 1 })
      w.grad = dp.ones(2)
      assert.error_matches(function() opt:step() end, "dp.optim.sgd: parameter 'fc.bias' [2] f32 cpu has no gradient",
                           nil, true)
      tu.assert_close(w, { 1, 1 }, 0)
      assert.equal(0, opt:step_count())
    end)

    it("leaves a frozen parameter without gradient alone", function()
      local w = dp.ones(2, { requires_grad = true })
      local frozen = dp.ones(2)
      local opt = dp.optim.sgd({ w, frozen }, { lr = 0.5 })
      w.grad = dp.ones(2)
      opt:step()
      tu.assert_close(w, { 0.5, 0.5 }, 0)
      tu.assert_close(frozen, { 1, 1 }, 0)
    end)

    it("rejects a gradient of the wrong shape or dtype naming the parameter", function()
      local w = dp.ones(2, 2, { requires_grad = true })
      local opt = dp.optim.sgd({ w }, { lr = 0.5 })
      w.grad = dp.ones(1, 4)
      assert.error_matches(function() opt:step() end,
        "parameter '1' [2,2] f32 cpu has gradient [1,4] f32 cpu; expected a contiguous float tensor", nil, true)
      w.grad = dp.ones(2, 2, "i32")
      assert.error_matches(function() opt:step() end, "has gradient [2,2] i32 cpu", nil, true)
      tu.assert_close(w, { 1, 1, 1, 1 }, 0)
    end)

    it("widens a bf16 gradient (plain autograd on bf16 weights) to f32 for the update", function()
      local w = dp.tensor({ 1, 2, 3 }, { dtype = "bf16", requires_grad = true })
      local opt = dp.optim.sgd({ w }, { lr = 0.5 })
      w.grad = dp.tensor({ 0.25, -1, 3 }, { dtype = "bf16" })
      opt:step()
      -- 1 - 0.125, 2 + 0.5, 3 - 1.5: exact in bf16
      tu.assert_close(w, { 0.875, 2.5, 1.5 }, 0)
      assert.are.equal("bf16", w:dtype())
    end)

    it("updates bf16 parameters with f32 arithmetic rounded once", function()
      local w = dp.tensor({ 1, -0.5, 0.3 }, { dtype = "bf16", requires_grad = true })
      local opt = dp.optim.sgd({ w }, { lr = 0.25 })
      local before = tu.values(w)
      w.grad = dp.tensor({ 0.5, 0.5, -1 })
      opt:step()
      local want = {}
      for i, v in ipairs(before) do
        local g = ({ 0.5, 0.5, -1 })[i]
        want[i] = dp.tensor({ v - 0.25 * g }, "f64"):cast("bf16"):item()
      end
      tu.assert_close(w, want, 0)
    end)
  end)

  describe("parameters", function()
    it("sorts a name -> tensor table and keeps array order", function()
      local x, y, z = dp.ones(1), dp.ones(2), dp.ones(3)
      local opt = dp.optim.sgd({ zeta = z, alpha = x, mid = y }, { lr = 1 })
      assert.same({ "alpha", "mid", "zeta" }, opt:names())
      local ps = opt:params()
      assert.is_true(ps[1] == x and ps[2] == y and ps[3] == z)
      assert.same({ "1", "2" }, dp.optim.sgd({ z, x }, { lr = 1 }):names())
    end)

    it("zero_grad clears gradients; set_lr changes the rate", function()
      local w = dp.ones(2, { requires_grad = true })
      local opt = dp.optim.sgd({ w }, { lr = 1 })
      w.grad = dp.ones(2)
      opt:zero_grad()
      assert.is_nil(w.grad)
      opt:set_lr(0.25)
      assert.equal(0.25, opt:lr())
      w.grad = dp.ones(2)
      opt:step()
      tu.assert_close(w, { 0.75, 0.75 }, 0)
      assert.error_matches(function() opt:set_lr(-1) end, "lr must be a finite number >= 0, got -1", nil, true)
    end)

    it("rejects bad parameters and options", function()
      local w = dp.ones(2)
      local cases = {
        { function() dp.optim.sgd({}, { lr = 1 }) end, "params is empty" },
        { function() dp.optim.sgd({ w, w }, { lr = 1 }) end, "parameters '1' and '2' are the same tensor" },
        { function() dp.optim.sgd({ w, 3 }, { lr = 1 }) end, "params[2] must be a tensor or a {name=, tensor=} record, got number" },
        { function() dp.optim.sgd({ a = dp.zeros(2, "i32") }, { lr = 1 }) end, "parameter 'a' must be a float tensor, got [2] i32 cpu" },
        { function() dp.optim.sgd({ a = dp.ones(2, 3):t() }, { lr = 1 }) end, "parameter 'a' [3,2] f32 cpu must be contiguous" },
        { function() dp.optim.sgd({ w }) end, "dp.optim.sgd: options with lr are required" },
        { function() dp.optim.sgd({ w }, { momentum = 0.9 }) end, "lr is required" },
        { function() dp.optim.sgd({ w }, { lr = 0 / 0 }) end, "lr must be a finite number >= 0, got nan" },
        { function() dp.optim.sgd({ w }, { lr = 1, momentum = 1 }) end, "momentum must be a finite number in [0, 1), got 1" },
        { function() dp.optim.sgd({ w }, { lr = 1, dampening = 2 }) end, "dampening must be a finite number in [0, 1], got 2" },
        { function() dp.optim.sgd({ w }, { lr = 1, weight_decay = -1 }) end, "weight_decay must be a finite number >= 0" },
        { function() dp.optim.sgd({ w }, { lr = 1, nesterov = true }) end, "nesterov needs momentum > 0 and dampening 0" },
        { function() dp.optim.sgd({ w }, { lr = 1, momentun = 0.9 }) end, "unknown option momentun (expected lr, momentum" },
      }
      for _, c in ipairs(cases) do assert.error_matches(c[1], c[2], nil, true) end
    end)
  end)

  describe("state_dict", function()
    local function model()
      return { w = dp.tensor({ { 1, 2 }, { 3, 4 } }, { requires_grad = true }),
               b = dp.tensor({ -1, 0.5 }, { dtype = "f64", requires_grad = true }) }
    end
    local function grads(m, t)
      local g = grad_values(4, t, 1)
      m.w.grad = dp.tensor({ { g[1], g[2] }, { g[3], g[4] } })
      m.b.grad = dp.tensor(grad_values(2, t, 2), "f64")
    end
    local opts = { lr = 0.1, momentum = 0.9, weight_decay = 0.01, nesterov = true }

    it("continues bit-identically after a save and load", function()
      local full, resumed = model(), model()
      local opt_full = dp.optim.sgd(full, opts)
      local opt_first = dp.optim.sgd(resumed, opts)
      for t = 1, 3 do
        grads(full, t); opt_full:step()
        grads(resumed, t); opt_first:step()
      end
      local saved = opt_first:state_dict()
      assert.equal("sgd", saved.kind)
      assert.equal(3, saved.step)
      assert.equal(0.9, saved.hyper.momentum)
      assert.is_true(dp.is_tensor(saved.state.w.momentum_buf))
      assert.same({ 2, 2 }, saved.state.w.momentum_buf:size())
      assert.equal("f64", saved.state.b.momentum_buf:dtype())
      -- a fresh optimizer over copies of the parameters
      local copy = { w = dp.tensor(resumed.w, { requires_grad = true }), b = dp.tensor(resumed.b, { requires_grad = true }) }
      local opt = dp.optim.sgd(copy, { lr = 1 })
      opt:load_state_dict(saved)
      assert.equal(0.1, opt:lr())
      opt_first:step()   -- the saved dict is a snapshot: later steps do not change it
      for t = 4, 6 do
        grads(full, t); opt_full:step()
        grads(copy, t); opt:step()
      end
      assert.same(full.w:totable(), copy.w:totable())
      assert.same(full.b:totable(), copy.b:totable())
      assert.equal(6, opt:step_count())
    end)

    it("rejects a state that does not fit, changing nothing", function()
      local m = model()
      local opt = dp.optim.sgd(m, opts)
      grads(m, 1)
      opt:step()
      local saved = opt:state_dict()
      local other = dp.optim.sgd({ w = dp.ones(2, 2), c = dp.ones(2) }, { lr = 1, momentum = 0.5 })
      assert.error_matches(function() other:load_state_dict(saved) end,
        "the state has parameter 'b', which this optimizer does not have (it has c, w)", nil, true)
      local small = dp.optim.sgd({ w = dp.ones(2, 1), b = dp.ones(2, "f64") }, { lr = 1 })
      assert.error_matches(function() small:load_state_dict(saved) end,
        "parameter 'w': momentum_buf is [2,2] f32 cpu, expected its shape in f32 (the parameter is [2,1] f32 cpu)",
        nil, true)
      assert.equal(1, small:lr())
      assert.equal(0, small:step_count())
      local adam = dp.optim.adam(model())
      assert.error_matches(function() adam:load_state_dict(saved) end, "the state is for sgd, this optimizer is adam",
                           nil, true)
      saved.hyper.momentum = 2
      assert.error_matches(function() opt:load_state_dict(saved) end, "momentum must be a finite number in [0, 1)",
                           nil, true)
    end)
  end)
end)
