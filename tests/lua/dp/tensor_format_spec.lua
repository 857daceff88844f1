-- Specs for dp.tensor_format: tostring shows values, shape, dtype, device and autograd state.
local dp = require "dp"

describe("dp.tensor_format", function()
  it("shows a matrix with shape, dtype and device", function()
    local s = tostring(dp.tensor({{1, 2, 3}, {4, 5, 6}}))
    assert.equal("tensor([[1., 2., 3.],\n        [4., 5., 6.]], shape=[2,3], dtype=f32, device=cpu)", s)
  end)

  it("shows fractions with four decimals and aligns columns", function()
    local s = tostring(dp.tensor({0.5, -1.25, 10}, "f64"))
    assert.equal("tensor([ 0.5000, -1.2500, 10.0000], shape=[3], dtype=f64, device=cpu)", s)
  end)

  it("switches to exponents for large or tiny magnitudes", function()
    assert.truthy(tostring(dp.tensor({1e-7, 1}, "f64")):find("1.0000e-07", 1, true))
    assert.truthy(tostring(dp.tensor({123456.5}, "f64")):find("1.2346e+05", 1, true))
  end)

  it("shows integers without decimals, and nan and inf by name", function()
    assert.truthy(tostring(dp.tensor({1, -2}, "i64")):find("tensor([ 1, -2], shape=[2], dtype=i64", 1, true))
    local s = tostring(dp.tensor({0, 1, -1}, "f64") / 0)
    assert.truthy(s:find("nan", 1, true) and s:find("inf", 1, true) and s:find("-inf", 1, true), s)
  end)

  it("shows a 0-d tensor as its value", function()
    assert.equal("tensor(2.5000, shape=[], dtype=f32, device=cpu)", tostring(dp.tensor(2.5)))
  end)

  it("abbreviates long dims to the first and last three", function()
    local s = tostring(dp.arange(100, "f32"))
    assert.equal("tensor([ 0.,  1.,  2., ..., 97., 98., 99.], shape=[100], dtype=f32, device=cpu)", s)
    local m = tostring(dp.arange(400, "f32"):reshape(20, 20))
    local lines = {}
    for line in m:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(7, #lines)
    assert.truthy(lines[4]:find("...", 1, true))
    assert.truthy(m:find("shape=[20,20]", 1, true))
  end)

  it("separates the blocks of 3-d tensors with a blank line", function()
    local s = tostring(dp.zeros(2, 1, 2))
    assert.equal("tensor([[[0., 0.]],\n\n        [[0., 0.]]], shape=[2,1,2], dtype=f32, device=cpu)", s)
  end)

  it("shows requires_grad and the producing op", function()
    local x = dp.ones(2, { requires_grad = true })
    assert.truthy(tostring(x):find("requires_grad=true", 1, true))
    assert.truthy(tostring(x:exp()):find("grad_fn=exp", 1, true))
  end)

  it("shows empty tensors", function()
    assert.equal("tensor([], shape=[0], dtype=f32, device=cpu)", tostring(dp.zeros(0)))
  end)
end)

describe("dp.tensor_format.display", function()
  local format = require "dp.tensor_format"
  it("shows the values, then a Torch7-like shape line", function()
    assert.equal("[[1., 2., 3.],\n [4., 5., 6.]]\n[2x3] f32 cpu", format.display(dp.tensor({{1, 2, 3}, {4, 5, 6}})))
    assert.equal("2.5000\n[scalar] f64 cpu", format.display(dp.tensor(2.5, "f64")))
    local long = format.display(dp.arange(100, "f32"))
    assert.equal("[ 0.,  1.,  2., ..., 97., 98., 99.]\n[100] f32 cpu", long)
    assert.truthy(format.display(dp.ones(2, { requires_grad = true })):find("requires_grad=true", 1, true))
  end)
end)
