-- testutil: helpers shared by the busted specs (numeric comparison of tensors and tables).
local M = {}

local function flatten(v, out)
  if type(v) == "table" then
    for _, x in ipairs(v) do flatten(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

-- Values of a tensor, nested table or number as a flat list.
function M.values(v)
  if type(v) == "cdata" then v = v:totable() end
  return flatten(v, {})
end

-- Asserts that actual (tensor, table or number) matches expected elementwise within
-- tol * (1 + |expected|).
function M.assert_close(actual, expected, tol)
  tol = tol or 1e-6
  local a, e = M.values(actual), M.values(expected)
  assert(#a == #e, ("%d values, expected %d"):format(#a, #e))
  for i = 1, #a do
    local ok = math.abs(a[i] - e[i]) <= tol * (1 + math.abs(e[i])) or (a[i] ~= a[i] and e[i] ~= e[i])
    assert(ok, ("value %d is %.10g, expected %.10g (tol %g)"):format(i, a[i], e[i], tol))
  end
end

-- The line number of the caller, to check where errors are reported.
function M.line() return debug.getinfo(2, "l").currentline end

return M
