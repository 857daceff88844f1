-- dp.text: text processing for BERT models: dp.text.new(vocab_path) gives a WordPiece tokenizer
-- matching Hugging Face's uncased BertTokenizer; the parts (vocab, basic, wordpiece, cache) are
-- exposed for direct use.
local encode = require "dp.text.encode"
local cache = require "dp.text.cache"

return {
  new = encode.new,                 -- new(vocab_path, opts) -> Tokenizer
  Tokenizer = encode.Tokenizer,     -- the method table
  vocab = require "dp.text.vocab",
  basic = require "dp.text.basic",
  wordpiece = require "dp.text.wordpiece",
  cache = cache.cache,              -- cache(path, key, build) -> value, hit
  file_key = cache.file_key,
  serialize = cache.serialize,
  deserialize = cache.deserialize,
}
