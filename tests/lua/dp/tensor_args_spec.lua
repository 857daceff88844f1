-- Specs for dp.tensor_args: 1-based dims and indices to C's 0-based ones, shapes and options.
local dp = require "dp"
local args = require "dp.tensor_args"

describe("dp.tensor_args", function()
  local p = dp.zeros(2, 3, 4).ptr

  it("maps 1-based and negative dims to 0-based ones", function()
    assert.equal(0, args.dim(p, 1, "op"))
    assert.equal(2, args.dim(p, 3, "op"))
    assert.equal(2, args.dim(p, -1, "op"))
    assert.equal(0, args.dim(p, -3, "op"))
    assert.equal(3, args.dim(p, 4, "op", 1))    -- unsqueeze may append
    assert.equal(3, args.dim(p, -1, "op", 1))
  end)

  it("rejects dim 0 and out-of-range dims naming the valid range", function()
    assert.error_matches(function() args.dim(p, 0, "op") end,
      "op: dim 0 out of range for [2,3,4] f32 cpu (dims are 1..3, or -3..-1 from the end)", nil, true)
    assert.error_matches(function() args.dim(p, -4, "op") end, "op: dim -4 out of range", nil, true)
    assert.error_matches(function() args.dim(dp.tensor(1).ptr, 1, "op") end,
      "op: dim 1 out of range for the 0-d tensor [] f32 cpu", nil, true)
  end)

  it("maps 1-based and negative indices", function()
    assert.equal(0, args.index(p, 1, 1, "op"))
    assert.equal(2, args.index(p, 1, 3, "op"))
    assert.equal(2, args.index(p, 1, -1, "op"))
    assert.error_matches(function() args.index(p, 1, 4, "op") end,
      "op: index 4 out of range for dim 2 of size 3 in [2,3,4] f32 cpu", nil, true)
  end)

  it("reads shapes from a table or from numbers, returning what follows", function()
    local n, shape, rest = args.shape("op", {5, 6}, "f64")
    assert.equal(2, n)
    assert.equal(6, tonumber(shape[1]))
    assert.equal("f64", rest)
    n, shape, rest = args.shape("op", 7, 8, 9, { dtype = "i32" })
    assert.equal(3, n)
    assert.equal(9, tonumber(shape[2]))
    assert.same({ dtype = "i32" }, rest)
  end)

  it("converts dims lists for reductions", function()
    local n, dims = args.dims(p, {1, -1}, "sum")
    assert.equal(2, n)
    assert.equal(0, dims[0])
    assert.equal(2, dims[1])
    assert.equal(0, (args.dims(p, nil, "sum")))
  end)

  it("unwraps tensors and names other arguments", function()
    assert.equal(p, args.ptr(dp.zeros(1), "op", 1) and p)
    assert.error_matches(function() args.ptr(3, "op", 2) end,
      "op: argument 2 is a number, expected a tensor", nil, true)
    assert.is_nil(args.optional(nil, "op", 3))
  end)
end)
