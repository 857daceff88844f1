-- Test helpers for dp.text specs: a small BERT vocab written to a temporary file.
local M = {}

-- The vocab used by the tokenizer specs; ids are 0-based positions in this list.
M.tokens = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
             "un", "##aff", "##able", "cafe", "naive", "don", "'", "t", "!", ".", ",", "?",
             "北", "京", "abc", "the", "dog", "cat", "a", "b", "c", "d", "e", "##s", "run",
             "##ning", "hello", "world", "x" }

-- Write lines (default M.tokens) to a fresh temporary file and return its path.
function M.write_vocab(lines, ending)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(lines or M.tokens, ending or "\n"), ending or "\n")
  f:close()
  return path
end

-- The 0-based id of token in M.tokens.
function M.id(token)
  for i, t in ipairs(M.tokens) do if t == token then return i - 1 end end
  error("no token " .. token)
end

return M
