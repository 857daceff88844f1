-- dp.train.flags: command-line flags for recipes. A spec lists each flag once (name, kind,
-- default, help); parse() turns arg into a config table or returns an error message that names
-- the flag and what was expected; parse_or_exit() prints that message and exits with status 2,
-- like dprun's own bad options (a script's error() would exit 1 with a traceback, which is for
-- bugs, not for typos).
--
--   local spec = { { "epochs", "int", 3, "passes over the training set", min = 1 },
--                  { "out", "string", "out", "output directory", meta = "DIR" },
--                  { "setup", "choice", "full", "what trains", choices = { "full", "lora" } } }
--   local cfg = flags.parse_or_exit(spec, arg, "bert_snli.lua")   -- cfg.epochs, cfg.given.epochs
local M = {}

-- kind -> function(text, flag) -> value or nil, expected (what a valid value looks like)
local kinds = {
  int = function(s, f)
    local v = tonumber(s)
    local lo, hi = f.min or -2 ^ 53, f.max or 2 ^ 53
    if v and v % 1 == 0 and v >= lo and v <= hi then return v end
    return nil, f.min and ("an integer >= %d"):format(f.min) or "an integer"
  end,
  number = function(s, f)
    local v = tonumber(s)
    local ok = v and v == v and v > -math.huge and v < math.huge
    if ok and f.min and v < f.min then ok = false end
    if ok and f.above and v <= f.above then ok = false end
    if ok then return v end
    return nil, f.above and ("a number > %g"):format(f.above) or f.min and ("a number >= %g"):format(f.min)
      or "a number"
  end,
  string = function(s) if s ~= "" then return s end return nil, "a non-empty value" end,
  choice = function(s, f)
    for _, c in ipairs(f.choices) do if s == c then return s end end
    return nil, "one of " .. table.concat(f.choices, ", ")
  end,
  bool = function(s)
    if s == "true" or s == "1" or s == "yes" then return true end
    if s == "false" or s == "0" or s == "no" then return false end
    return nil, "true or false"
  end,
}

-- The spec's entries as tables {name=, kind=, default=, help=, ...} keyed by name and in order.
local function normalise(spec)
  local by_name, list = {}, {}
  for i, e in ipairs(spec) do
    local f = {}
    for k, v in pairs(e) do f[k] = v end
    f.name, f.kind, f.default, f.help = e.name or e[1], e.kind or e[2], e.default, e.help or e[4]
    if f.default == nil then f.default = e[3] end
    if type(f.name) ~= "string" or not kinds[f.kind] then
      error(("flags: spec entry %d needs a name and a kind (int, number, string, choice, bool)"):format(i), 2)
    end
    by_name[f.name] = f
    list[#list + 1] = f
  end
  return by_name, list
end

local function flag_name(name) return "--" .. name:gsub("_", "-") end

-- usage(spec, prog) -> the help text.
function M.usage(spec, prog)
  local _, list = normalise(spec)
  local lines = { ("usage: dprun %s [flags]"):format(prog or "script.lua"), "" }
  for _, f in ipairs(list) do
    local value = f.meta or (f.kind == "choice" and table.concat(f.choices, "|") or f.kind:upper())
    local default = f.default ~= nil and (" (default %s)"):format(tostring(f.default)) or ""
    lines[#lines + 1] = ("  %-34s %s%s"):format(flag_name(f.name) .. " " .. value, f.help or "", default)
  end
  lines[#lines + 1] = "  --help                             print this help"
  return table.concat(lines, "\n") .. "\n"
end

-- parse(spec, argv) -> cfg or nil, message. cfg has every flag (underscored names, defaults
-- filled) and cfg.given[name] = true for those on the command line. "--help" gives cfg.help.
-- Flags are "--name value" or "--name=value"; dashes and underscores in names are the same.
function M.parse(spec, argv)
  local by_name = normalise(spec)
  local cfg, given = {}, {}
  for name, f in pairs(by_name) do cfg[name] = f.default end
  local i, n = 1, #(argv or {})
  while i <= n do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      cfg.help = true
    else
      local body = a:match("^%-%-(.+)$")
      if not body then
        return nil, ("unexpected argument '%s' (flags look like --name value)"):format(a)
      end
      local key, value = body:match("^([^=]+)=(.*)$")
      key = (key or body):gsub("-", "_")
      local f = by_name[key]
      if not f then
        local known = {}
        for _, e in ipairs(spec) do known[#known + 1] = flag_name(e.name or e[1]) end
        return nil, ("unknown flag --%s (expected one of %s)"):format((key:gsub("_", "-")), table.concat(known, ", "))
      end
      if value == nil then
        if i == n or argv[i + 1]:match("^%-%-") then
          local _, expected = kinds[f.kind]("", f)
          return nil, ("flag %s needs a value (%s)"):format(flag_name(key), expected)
        end
        i = i + 1
        value = argv[i]
      end
      local v, expected = kinds[f.kind](value, f)
      if v == nil then
        return nil, ("flag %s expects %s, got '%s'"):format(flag_name(key), expected, value)
      end
      if f.check then
        local ok, why = f.check(v)
        if not ok then return nil, ("flag %s: %s, got '%s'"):format(flag_name(key), why, value) end
      end
      cfg[key], given[key] = v, true
    end
    i = i + 1
  end
  cfg.given = given
  return cfg
end

-- parse_or_exit(spec, argv, prog): parse, or print the error and exit 2; --help prints the
-- usage and exits 0.
function M.parse_or_exit(spec, argv, prog)
  local cfg, err = M.parse(spec, argv)
  if not cfg then M.exit_usage(err, prog) end
  if cfg.help then
    io.stdout:write(M.usage(spec, prog))
    os.exit(0)
  end
  return cfg
end

-- merge_saved(cfg, saved, keep) -> cfg or nil, message: a resumed run takes its configuration from
-- the checkpoint (saved); flags given again must agree with it, except those in keep (a list of
-- names), which this run decides (out defaults to the saved one).
function M.merge_saved(cfg, saved, keep)
  local own = {}
  for _, k in ipairs(keep or {}) do own[k] = true end
  local out = { given = cfg.given }
  for k, v in pairs(saved or {}) do if k ~= "given" and k ~= "help" then out[k] = v end end
  for k in pairs(cfg.given) do
    if not own[k] and out[k] ~= cfg[k] then
      return nil, ("%s %s differs from the checkpoint's %s; a resumed run keeps its configuration")
        :format(flag_name(k), tostring(cfg[k]), tostring(out[k]))
    end
  end
  for k in pairs(own) do
    if cfg.given[k] or k ~= "out" then out[k] = cfg[k] end
  end
  return out
end

-- A usage error found after parsing (a combination of flags): print it, exit 2.
function M.exit_usage(msg, prog)
  io.stderr:write(("%s: %s (see --help)\n"):format(prog or "dprun", msg))
  io.stderr:flush()
  os.exit(2)
end

return M
