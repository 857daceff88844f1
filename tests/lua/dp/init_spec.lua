-- Specs for dp (init.lua): what require "dp" gathers, and the process-wide helpers.
local dp = require "dp"

describe("dp", function()
  it("reports its version from the C library", function()
    assert.truthy(dp.version():match("^%d+%.%d+%.%d+$"))
  end)

  it("exposes ops and constructors as functions", function()
    for _, name in ipairs { "add", "matmul", "cross_entropy", "embedding", "dropout", "masked_fill",
                            "index_add", "reshape", "zeros", "randn", "tensor", "no_grad" } do
      assert.is_function(dp[name], name)
    end
  end)

  it("sets and reads the thread count", function()
    local before = dp.get_num_threads()
    dp.set_num_threads(1)
    assert.equal(1, dp.get_num_threads())
    dp.set_num_threads(before)
    assert.equal(before, dp.get_num_threads())
  end)

  it("reports memory and live tensors", function()
    local current, peak = dp.memory()
    assert.is_number(current)
    assert.is_true(peak >= current)
    assert.is_number(dp.live_tensors())
  end)

  it("loads submodules on first use and gives nil for unknown ones", function()
    assert.is_table(dp.util.json)
    assert.is_nil(dp.no_such_module)
  end)

  it("tells whether CUDA is usable", function()
    assert.is_boolean(dp.cuda_available())
  end)
end)
