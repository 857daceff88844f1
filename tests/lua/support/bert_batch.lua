-- A fixed padded batch for the specs of tiny BERTs (vocab_size >= 23, type_vocab_size >= 2,
-- max_position_embeddings >= 6, num_labels >= 3): four examples of T = 6 tokens.
local dp = require "dp"

local M = {}

-- rows: nested Lua arrays of integers -> an i64 tensor.
function M.ids(rows) return dp.tensor(rows, "i64") end

-- A fresh batch: input_ids, token_type_ids, attention_mask (4, 6), labels (4) and n = 4.
function M.batch()
  local ids = M.ids
  return {
    input_ids = ids{ { 2, 5, 7, 9, 3, 0 }, { 2, 11, 3, 0, 0, 0 }, { 2, 4, 4, 3, 8, 3 }, { 2, 22, 1, 3, 0, 0 } },
    token_type_ids = ids{ { 0, 0, 0, 1, 1, 0 }, { 0, 0, 1, 0, 0, 0 }, { 0, 0, 0, 1, 1, 1 }, { 0, 1, 1, 1, 0, 0 } },
    attention_mask = ids{ { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 0, 0, 0 }, { 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 0, 0 } },
    labels = ids{ 0, 2, 1, 2 },
    n = 4,
  }
end

return M
