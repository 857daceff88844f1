-- dp.nn: modules with named parameter trees (Module, Linear, Embedding, LayerNorm, Dropout) and
-- BERT with Hugging Face's names (dp.nn.bert).
local module = require "dp.nn.module"

local nn = {
  Module = module.Module,
  class = module.class,
  ModuleList = module.ModuleList.new,
  Linear = require("dp.nn.linear").new,
  Embedding = require("dp.nn.embedding").new,
  LayerNorm = require("dp.nn.layer_norm").new,
  Dropout = require("dp.nn.dropout").new,
}

nn.lora = require "dp.nn.lora"

local bert = require "dp.nn.bert"
nn.bert = bert
nn.BertModel = bert.BertModel.new
nn.BertForSequenceClassification = bert.BertForSequenceClassification.new

return nn
