-- dp.train.precision: the recipes' --precision and --fp32 flags: the policy they make (a preset,
-- with the modules matching the --fp32 patterns kept in fp32), and how a resumed run treats them
-- (a different precision is allowed and announced; the weights continue under the new one).
local flags = require "dp.train.flags"

local M = {}

M.PRESETS = { "fp32", "bf16", "mixed-bf16", "mixed-f16", "fp8" }

-- Flag spec entries (dp.train.flags) for a recipe.
M.flags = {
  { "precision", "choice", "fp32", "numeric precision: parameters stored>computed in fp32>fp32, bf16>bf16, "
    .. "fp32>bf16, fp32>f16 (with DP-safe dynamic loss scaling) or fp32>fp8 GEMMs", choices = M.PRESETS },
  { "fp32", "string", nil, "comma-separated module-name patterns kept in fp32 (e.g. LayerNorm,embeddings,classifier)",
    meta = "PATTERNS" },
}

-- "LayerNorm, embeddings,classifier" -> { "LayerNorm", "embeddings", "classifier" }; errors name
-- a malformed Lua pattern.
function M.patterns(text)
  local out = {}
  for item in (text or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then
      local ok, err = pcall(string.find, "", item)
      if not ok then return nil, ("--fp32: '%s' is not a valid Lua pattern (%s)"):format(item, tostring(err)) end
      out[#out + 1] = item
    end
  end
  return out
end

-- The policy for cfg.precision and cfg.fp32, or nil, message (check it before any slow work; put
-- it on the model with dp.precision.apply after the model is built, before its optimizer).
function M.policy(cfg)
  local pats, err = M.patterns(cfg.fp32)
  if not pats then return nil, err end
  local rules = {}
  for i, p in ipairs(pats) do rules[i] = { p, "fp32" } end
  return require("dp.precision").policy(cfg.precision or "fp32", rules)
end

-- merge_resume(cfg, saved, keep) -> merged cfg, note (or nil, message): flags.merge_saved, except
-- that --precision and --fp32 given again may differ from the checkpoint's; the note says so.
-- Not given, they are the checkpoint's (fp32 for a checkpoint made before these flags).
function M.merge_resume(cfg, saved, keep)
  local given, hidden = cfg.given, {}
  for k, v in pairs(given) do if k ~= "precision" and k ~= "fp32" then hidden[k] = v end end
  cfg.given = hidden
  local merged, err = flags.merge_saved(cfg, saved, keep)
  cfg.given = given
  if not merged then return nil, err end
  merged.given = given
  merged.precision = merged.precision or "fp32"
  local changed = {}
  for _, k in ipairs{ "precision", "fp32" } do
    if given[k] then
      if merged[k] ~= cfg[k] then
        changed[#changed + 1] = ("--%s %s (the checkpoint ran %s)"):format(k, cfg[k], tostring(merged[k] or "none"))
      end
      merged[k] = cfg[k]
    end
  end
  if #changed == 0 then return merged end
  return merged, "resuming with " .. table.concat(changed, " and ") .. ": the weights continue under the new precision"
end

-- A one-line description for the run's log and its metrics record.
function M.describe(cfg)
  return cfg.precision .. (cfg.fp32 and (" (fp32: " .. cfg.fp32 .. ")") or "")
end

return M
