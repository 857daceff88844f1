-- Specs for the tensor's precision bindings: version / bump_version, dp.cast_into, retype_, and
-- dtype promotion seen from Lua.
local dp = require "dp"
local tu = require "testutil"

describe("dp.tensor precision", function()
  it("counts in-place writes in version, shared by views", function()
    local t = dp.zeros(2, 3)
    local v = t:version()
    t:fill(1)
    t:copy(dp.ones(2, 3))
    t[{1, 2}] = 5
    assert.are.equal(v + 3, t:version())
    local _ = t + t
    assert.are.equal(v + 3, t:version())
    t:select(1, 1):fill(2)
    assert.are.equal(v + 4, t:version())
    assert.are.equal(t, t:bump_version())
    assert.are.equal(v + 5, t:version())
  end)

  it("casts into a cache, refreshing only when asked", function()
    local w = dp.tensor({{1 + 2 ^ -8, 3}, {1 + 3 * 2 ^ -8, -0.5}}):requires_grad(true)
    local cache = dp.full({2, 2}, 9, "bf16")
    local y = dp.cast_into(w, cache, false)
    assert.are.equal("bf16", y:dtype())
    tu.assert_close(y, {{9, 9}, {9, 9}}, 0)
    assert.are.equal(0, cache:version())
    y = w:cast_into(cache)   -- refresh defaults to true
    assert.are.equal(1, cache:version())
    tu.assert_close(cache, {{1, 3}, {1 + 2 ^ -6, -0.5}}, 0)   -- ties to even
    assert.are.equal("cast", y:op_name())
    local r = dp.tensor({{1, 2}, {3, 4}}, "bf16")
    local loss = (y * r):sum()
    loss:backward()
    assert.are.equal("f32", w.grad:dtype())
    tu.assert_close(w.grad, {{1, 2}, {3, 4}}, 0)
    assert.error_matches(function() dp.cast_into(w, dp.zeros({3, 2}, "bf16")) end,
      "cast_into: cache [3,2] bf16 cpu must have x's shape", nil, true)
    assert.error_matches(function() dp.cast_into(w, cache, 1) end, "refresh must be a boolean", nil, true)
  end)

  it("retypes a leaf in place, keeping the handle and the category", function()
    local w = dp.tensor({{1 + 2 ^ -8, 2}, {1 + 3 * 2 ^ -8, 4}}):requires_grad(true)
    w:set_mem_category("master")
    w.grad = dp.ones(2, 2)
    local v = w:version()
    assert.are.equal(w, w:retype_("bf16"))
    assert.are.same({ "bf16", "master", v + 1 }, { w:dtype(), w:mem_category(), w:version() })
    assert.is_nil(w.grad)
    assert.is_true(w:requires_grad())
    tu.assert_close(w, {{1, 2}, {1 + 2 ^ -6, 4}}, 0)
    local view = w:narrow(1, 1, 1)
    assert.error_matches(function() w:retype_("f32") end, "tensor_retype_: other tensors view the storage",
      nil, true)
    assert.are.equal("bf16", w:dtype())
    view = nil   -- luacheck: ignore
    w:retype_("f32")   -- the collected view no longer blocks it
    assert.are.equal("f32", w:dtype())
    assert.error_matches(function() (w * 2):retype_("bf16") end, "not a leaf", nil, true)
  end)

  it("promotes mixed float operands, gradients in each operand's dtype", function()
    local a = dp.tensor({1, 2, 3}, "f64"):requires_grad(true)
    local b = dp.tensor({0.5, 0.25, 2}, "bf16"):requires_grad(true)
    local y = a * b
    assert.are.equal("f64", y:dtype())
    y:sum():backward()
    assert.are.same({ "f64", "bf16" }, { a.grad:dtype(), b.grad:dtype() })
    tu.assert_close(a.grad, {0.5, 0.25, 2}, 0)
    tu.assert_close(b.grad, {1, 2, 3}, 0)
  end)
end)
