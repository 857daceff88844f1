-- The dp.privacy namespace reaches the accountant from `require "dp"` alone.
describe("dp.privacy", function()
  it("exposes the accountant through dp.privacy", function()
    local dp = require "dp"
    assert.is_table(dp.privacy)
    local acct = dp.privacy.accountant
    assert.is_table(acct)
    -- At q = 1 one step of the Gaussian mechanism has RDP alpha / (2 sigma^2) at every order,
    -- so with a single order the reported epsilon is the conversion of that closed form.
    local alpha, sigma, delta = 8, 2, 1e-5
    local r = acct.epsilon{ q = 1, sigma = sigma, steps = 1, delta = delta, accountant = "rdp",
                            orders = { alpha } }
    local rdp = alpha / (2 * sigma ^ 2)
    local expected = rdp + math.log(1 - 1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
    assert.is_true(math.abs(r.epsilon - expected) < 1e-9 * expected,
                   ("epsilon %.12g, closed form %.12g"):format(r.epsilon, expected))
  end)
end)
