-- dp.text.wordpiece: BERT's WordPiece: greedy longest-match-first subwords with "##" marking a
-- continuation, the unknown token for a word that cannot be fully segmented or is too long.
local M = {}

local byte = string.byte

-- Byte offsets where each UTF-8 character of s starts, plus #s + 1 at the end.
local function char_starts(s)
  local starts, n = {}, 0
  for i = 1, #s do
    local b = byte(s, i)
    if b < 0x80 or b >= 0xC0 then n = n + 1; starts[n] = i end
  end
  starts[n + 1] = #s + 1
  return starts, n
end

-- new(ids, opts) -> function(word) -> array of pieces. ids: {token -> id}; opts.unk (default
-- "[UNK]"), opts.max_chars (default 100: longer words, counted in characters, become unk).
function M.new(ids, opts)
  opts = opts or {}
  local unk = opts.unk or "[UNK]"
  local max_chars = opts.max_chars or 100
  return function(word)
    local starts, n = char_starts(word)
    if n > max_chars then return { unk } end
    local pieces, start = {}, 1
    while start <= n do
      local stop, found = n, nil
      while stop >= start do   -- the longest vocab entry starting at character `start`
        local sub = word:sub(starts[start], starts[stop + 1] - 1)
        if start > 1 then sub = "##" .. sub end
        if ids[sub] then found = sub; break end
        stop = stop - 1
      end
      if not found then return { unk } end
      pieces[#pieces + 1] = found
      start = stop + 1
    end
    return pieces
  end
end

return M
