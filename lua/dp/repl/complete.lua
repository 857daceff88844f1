-- dp.repl.complete: tab-completion candidates for the REPL: globals and locals, fields of tables
-- and of their metatables' __index chains (class methods), tensor methods, `obj:` methods and
-- the loaded submodules of lazy namespaces such as dp.
local M = {}

local keywords = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if",
                   "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until",
                   "while" }

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function is_tensor(v)
  if type(v) ~= "cdata" then return false end
  local ok, dp = pcall(require, "dp")
  return ok and dp.is_tensor(v)
end

-- The name under which a table is in package.loaded ("dp", "dp.nn"), if any.
local function module_name(t)
  for name, mod in pairs(package.loaded) do
    if mod == t and type(name) == "string" then return name end
  end
end

-- name -> value of everything reachable as v.name (values may be nil for lazy entries).
local function fields(v)
  local out = {}
  if is_tensor(v) then
    for k, fn in pairs(require("dp").Tensor) do out[k] = fn end
    out.grad = false
    return out
  end
  if type(v) == "string" then v = string end
  local seen, depth = {}, 0
  while type(v) == "table" and not seen[v] and depth < 16 do
    seen[v] = true
    depth = depth + 1
    for k, x in pairs(v) do
      if out[k] == nil then out[k] = x end
    end
    -- Lazy namespaces (dp.lazy) list only what is loaded; those show their loaded submodules.
    local name = module_name(v)
    if name then
      local prefix = name .. "."
      for full in pairs(package.loaded) do
        if type(full) == "string" and full:sub(1, #prefix) == prefix then
          local rest = full:sub(#prefix + 1)
          if is_identifier(rest) and out[rest] == nil then out[rest] = false end
        end
      end
    end
    local mt = getmetatable(v)
    v = type(mt) == "table" and rawget(mt, "__index") or nil
  end
  return out
end

-- The value of a dotted path ("dp.nn", "model.encoder") looked up in env, or nil.
local function resolve(path, env)
  local v = env
  for part in path:gmatch("[^.:]+") do
    if not is_identifier(part) then return nil end
    local ok, x = pcall(function() return v[part] end)
    if not ok or x == nil then return nil end
    v = x
  end
  return v
end

local function sorted_matches(names, partial, prefix, methods_only)
  local out, seen = {}, {}
  for name, value in pairs(names) do
    if is_identifier(name) and name:sub(1, #partial) == partial and not seen[name]
       and (not methods_only or type(value) == "function") then
      seen[name] = true
      out[#out + 1] = prefix .. name
    end
  end
  table.sort(out)
  return out
end

-- Candidates replacing word (the text before the cursor back to the last separator):
-- "pri" -> {"print", "privacy"}; "dp.ze" -> {"dp.zeros", ...}; "x:no" -> {"x:norm", ...}.
-- env: the table code is evaluated in; names: extra name -> value entries at the top level
-- (locals and helpers that env reads through its metatable).
function M.candidates(word, env, names)
  env = env or _G
  local head, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  if not head then
    local top = {}
    for k, v in pairs(_G) do top[k] = v end
    for k, v in pairs(names or {}) do top[k] = v end
    for k, v in pairs(env) do top[k] = v end
    for _, k in ipairs(keywords) do if top[k] == nil then top[k] = false end end
    return sorted_matches(top, word, "")
  end
  if head == "" then return {} end
  local target = resolve(head, env)
  if target == nil then return {} end
  return sorted_matches(fields(target), partial, head .. sep, sep == ":")
end

return M
