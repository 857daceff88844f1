-- dp.text.vocab: reads a BERT vocab.txt (one token a line, id = 0-based line number) with errors
-- that name the file and line; checks the special tokens a BERT tokenizer needs.
local M = {}

M.specials = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }

-- load(path[, opts]) -> { path, size, ids = {token -> id}, tokens = {[id] = token} }.
-- opts.required: special tokens to insist on (default M.specials; {} for none).
-- Stricter than transformers, which silently keeps the last of duplicate tokens: a duplicate or
-- an empty line is an error. A trailing "\r" (a CRLF file) is dropped rather than kept in the
-- token.
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then
    error(("vocab.load: path must be a string (got %s)"):format(type(path)), 2)
  end
  local f, err = io.open(path, "rb")
  if not f then error(("vocab.load: cannot open vocab file %s (%s)"):format(path, err), 2) end
  local text = f:read("*a")
  f:close()
  if text == "" then error(("vocab.load: %s: no tokens (empty vocab file)"):format(path), 2) end
  local ids, tokens, n = {}, {}, 0
  local line = 0
  for tok in (text:sub(-1) == "\n" and text or text .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    tok = tok:gsub("\r$", "")
    if tok == "" then
      error(("vocab.load: %s line %d: empty line (expected one token per line)"):format(
        path, line), 2)
    end
    if ids[tok] then
      error(("vocab.load: %s line %d: duplicate token %q (first on line %d)"):format(
        path, line, tok, ids[tok] + 1), 2)
    end
    ids[tok] = n
    tokens[n] = tok
    n = n + 1
  end
  local missing = {}
  for _, s in ipairs(opts.required or M.specials) do
    if not ids[s] then missing[#missing + 1] = s end
  end
  if #missing > 0 then
    error(("vocab.load: %s: missing special token%s %s (a BERT vocab needs %s)"):format(
      path, #missing > 1 and "s" or "", table.concat(missing, ", "),
      table.concat(opts.required or M.specials, ", ")), 2)
  end
  return { path = path, size = n, ids = ids, tokens = tokens }
end

return M
