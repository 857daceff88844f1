-- dp.data.snli: reads the Stanford NLI corpus (SNLI 1.0 jsonl) into Lua arrays of sentence pairs.
--
--   local d = snli.read("snli_1.0/snli_1.0_dev.jsonl")
--   -- d.premises[i], d.hypotheses[i] (strings), d.labels[i] (0 entailment, 1 neutral,
--   -- 2 contradiction: the Hugging Face "snli" order), d.dropped (lines labelled "-"), d.path
--   local s = snli.read_dir("snli_1.0")   -- { train = d, dev = d, test = d }
--   snli.write_dir(dir, s)                -- dir/train.jsonl, dev.jsonl, test.jsonl
--
-- Only sentence1, sentence2 and gold_label are read; other keys are ignored. The file is read a
-- line at a time (the train file is ~450 MB), so memory holds only the kept sentences.
local json = require "dp.util.json"

local M = {}

-- gold_label string -> class id, and the reverse for writers (dp.data.synthetic_nli).
M.label_ids = { entailment = 0, neutral = 1, contradiction = 2 }
M.label_names = { [0] = "entailment", [1] = "neutral", [2] = "contradiction" }

local function fail(path, lineno, msg)
  error(("snli.read: %s:%d: %s"):format(path, lineno, msg), 0)
end

local function string_field(obj, key, path, lineno)
  local v = obj[key]
  if v == nil then fail(path, lineno, ("field '%s' is missing (expected a string)"):format(key)) end
  if type(v) ~= "string" then
    local shown = v == json.null and "null" or type(v)
    fail(path, lineno, ("field '%s' is %s (expected a string)"):format(key, shown))
  end
  return v
end

-- read(path) -> { premises, hypotheses, labels, dropped, path }.
function M.read(path)
  if type(path) ~= "string" then
    error("snli.read: path must be a string, got " .. type(path), 2)
  end
  local f, err = io.open(path, "rb")
  if not f then error(("snli.read: cannot open %s (%s)"):format(path, tostring(err)), 2) end
  local premises, hypotheses, labels = {}, {}, {}
  local n, dropped, lineno = 0, 0, 0
  -- pcall so that the file is closed before a malformed line's error propagates.
  local ok, msg = pcall(function()
    for line in f:lines() do
      lineno = lineno + 1
      if lineno == 1 and line:sub(1, 3) == "\239\187\191" then line = line:sub(4) end
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      if line:find("%S") then
        local okj, obj = pcall(json.decode, line)
        if not okj then fail(path, lineno, "invalid JSON (" .. tostring(obj) .. ")") end
        if type(obj) ~= "table" or obj == json.null or obj[1] ~= nil then
          fail(path, lineno, "expected a JSON object with sentence1, sentence2 and gold_label")
        end
        local gold = string_field(obj, "gold_label", path, lineno)
        if gold == "-" then
          dropped = dropped + 1   -- no annotator majority: SNLI's convention is to skip these
        else
          local id = M.label_ids[gold]
          if not id then
            fail(path, lineno, ("field 'gold_label' is '%s' (expected entailment, neutral, "
              .. "contradiction or -)"):format(gold))
          end
          local s1 = string_field(obj, "sentence1", path, lineno)
          local s2 = string_field(obj, "sentence2", path, lineno)
          n = n + 1
          premises[n], hypotheses[n], labels[n] = s1, s2, id
        end
      end
    end
  end)
  f:close()
  if not ok then error(msg, 0) end
  return { premises = premises, hypotheses = hypotheses, labels = labels, dropped = dropped,
           path = path }
end

local exists = require("dp.util.fs").exists

-- The file names a split may have, in the order they are tried.
local function candidates(dir, split)
  return { dir .. "/snli_1.0_" .. split .. ".jsonl", dir .. "/" .. split .. ".jsonl" }
end

-- read_dir(dir, {splits = {"train", "dev", "test"}}) -> { train =, dev =, test = }. Each split is
-- snli_1.0_<split>.jsonl (the official archive's names) or <split>.jsonl (synthetic_nli.write's).
function M.read_dir(dir, opts)
  if type(dir) ~= "string" then
    error("snli.read_dir: dir must be a string, got " .. type(dir), 2)
  end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local splits = opts and opts.splits or { "train", "dev", "test" }
  local out = {}
  for _, split in ipairs(splits) do
    local found
    for _, p in ipairs(candidates(dir, split)) do
      if exists(p) then found = p break end
    end
    if not found then
      local c = candidates(dir, split)
      error(("snli.read_dir: no %s split in %s (looked for %s and %s)"):format(
        split, dir, c[1], c[2]), 2)
    end
    out[split] = M.read(found)
  end
  return out
end

-- ------------------------------------------------------------------ writing

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- write_atomically({{path, text}, ...}, who): writes each text to path.tmp, then renames them all,
-- so a failed write leaves no partial file (who names the caller in errors).
function M.write_atomically(files, who)
  local written = {}
  local function cleanup() for _, t in ipairs(written) do os.remove(t) end end
  for _, file in ipairs(files) do
    local tmp = file[1] .. ".tmp"
    local f, err = io.open(tmp, "wb")
    if not f then cleanup(); error(("%s: cannot write %s (%s)"):format(who, tmp, err), 0) end
    written[#written + 1] = tmp
    local ok, werr = f:write(file[2])
    local closed, cerr = f:close()
    if not ok or not closed then
      cleanup(); error(("%s: writing %s failed (%s)"):format(who, tmp, tostring(werr or cerr)), 0)
    end
  end
  for _, file in ipairs(files) do
    local ok, err = os.rename(file[1] .. ".tmp", file[1])
    if not ok then
      cleanup(); error(("%s: cannot rename to %s (%s)"):format(who, file[1], err), 0)
    end
  end
end

-- write_dir(dir, splits): dir/<split>.jsonl for each of splits.train, .dev, .test present, one
-- {"sentence1", "sentence2", "gold_label"} object a line; read_dir reads them back. Creates dir.
function M.write_dir(dir, splits)
  if type(dir) ~= "string" or type(splits) ~= "table" then
    error("snli.write_dir: expected (dir string, splits table)", 2)
  end
  os.execute("mkdir -p " .. quote(dir) .. " 2>/dev/null")
  local files = {}
  for _, split in ipairs({ "train", "dev", "test" }) do
    local d = splits[split]
    if d then
      local lines = {}
      for i = 1, #d.premises do
        local s1, s2, gold = d.premises[i], d.hypotheses[i], M.label_names[d.labels[i]]
        if type(s1) ~= "string" or type(s2) ~= "string" or not gold then
          error(("snli.write_dir: %s example %d needs string premise and hypothesis and a label "
            .. "0, 1 or 2 (got %s, %s, %s)"):format(split, i, type(s1), type(s2),
            tostring(d.labels[i])), 2)
        end
        lines[i] = json.encode(json.object({ sentence1 = s1, sentence2 = s2, gold_label = gold }))
      end
      lines[#lines + 1] = ""
      files[#files + 1] = { dir .. "/" .. split .. ".jsonl", table.concat(lines, "\n") }
    end
  end
  M.write_atomically(files, "snli.write_dir")
end

return M
