-- Specs for dp.data.snli: reading SNLI jsonl (labels, dropped "-" lines, blank lines, CRLF, BOM,
-- ignored keys), errors that name file:line and the field, and read_dir's file names.
local snli = require "dp.data.snli"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function line(s1, s2, gold, extra)
  return ('{"annotator_labels": ["x"], "sentence1": "%s", "sentence2": "%s", "gold_label": "%s"%s}')
    :format(s1, s2, gold, extra or "")
end

-- The error message raised by f(...), or nil when it succeeds.
local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  if ok then return nil end
  return tostring(msg)
end

describe("dp.data.snli", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("reads good lines, drops and counts '-', skips blank lines, tolerates BOM and CRLF", function()
    local p = dir .. "/a.jsonl"
    write(p, "\239\187\191" .. line("A dog runs.", "An animal runs.", "entailment") .. "\r\n"
      .. line("A cat sits.", "A cat sleeps.", "contradiction") .. "\r\n"
      .. "\r\n"
      .. line("Two men.", "Men.", "-") .. "\n"
      .. "   \n"
      .. line("A \\\"quoted\\\" man.", "A man is tall.", "neutral", ', "pairID": "7"') .. "\n"
      .. line("X.", "Y.", "-") .. "\n"
      .. line("A boy.", "A child.", "entailment"))   -- no final newline
    local d = snli.read(p)
    assert.are.same({ "A dog runs.", "A cat sits.", 'A "quoted" man.', "A boy." }, d.premises)
    assert.are.same({ "An animal runs.", "A cat sleeps.", "A man is tall.", "A child." },
                    d.hypotheses)
    assert.are.same({ 0, 2, 1, 0 }, d.labels)
    assert.are.equal(2, d.dropped)
    assert.are.equal(p, d.path)
  end)

  it("reads an empty file as no examples", function()
    local p = dir .. "/empty.jsonl"
    write(p, "")
    local d = snli.read(p)
    assert.are.equal(0, #d.labels)
    assert.are.equal(0, d.dropped)
  end)

  describe("errors name the file, the line and what was expected", function()
    local good = line("A.", "B.", "neutral") .. "\n"
    local cases = {
      { "invalid JSON", '{"sentence1": "A", ', ":3: invalid JSON %(json.decode: " },
      { "not an object", '["a", "b"]', ":3: expected a JSON object" },
      { "missing sentence1", '{"sentence2": "B", "gold_label": "neutral"}',
        ":3: field 'sentence1' is missing %(expected a string%)" },
      { "non-string sentence2", '{"sentence1": "A", "sentence2": 5, "gold_label": "neutral"}',
        ":3: field 'sentence2' is number %(expected a string%)" },
      { "null sentence1", '{"sentence1": null, "sentence2": "B", "gold_label": "neutral"}',
        ":3: field 'sentence1' is null %(expected a string%)" },
      { "missing gold_label", '{"sentence1": "A", "sentence2": "B"}',
        ":3: field 'gold_label' is missing" },
      { "unknown gold_label", '{"sentence1": "A", "sentence2": "B", "gold_label": "maybe"}',
        ":3: field 'gold_label' is 'maybe' %(expected entailment, neutral, contradiction or %-%)" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local p = dir .. "/bad.jsonl"
        -- line 2 is blank: blank lines still count, so the bad line is line 3.
        write(p, good .. "\n" .. case[2] .. "\n" .. good)
        local msg = err_of(snli.read, p)
        assert.is_not_nil(msg)
        assert.truthy(msg:find("snli.read: " .. p:gsub("%p", "%%%0") .. case[3]), msg)
      end)
    end

    it("a missing file", function()
      local msg = err_of(snli.read, dir .. "/nope.jsonl")
      assert.truthy(msg:find("cannot open " .. dir:gsub("%p", "%%%0") .. "/nope.jsonl", 1), msg)
    end)
  end)

  describe("read_dir", function()
    it("reads the official names", function()
      for i, split in ipairs({ "train", "dev", "test" }) do
        local text = ""
        for _ = 1, i do text = text .. line("P.", "H.", "contradiction") .. "\n" end
        write(dir .. "/snli_1.0_" .. split .. ".jsonl", text)
      end
      local s = snli.read_dir(dir .. "/")
      assert.are.equal(1, #s.train.labels)
      assert.are.equal(2, #s.dev.labels)
      assert.are.equal(3, #s.test.labels)
      assert.are.equal(dir .. "/snli_1.0_dev.jsonl", s.dev.path)
    end)

    it("reads the short names", function()
      for _, split in ipairs({ "train", "dev", "test" }) do
        write(dir .. "/" .. split .. ".jsonl", line(split, "H.", "entailment") .. "\n")
      end
      local s = snli.read_dir(dir)
      assert.are.same({ "dev" }, s.dev.premises)
      assert.are.same({ "test" }, s.test.premises)
    end)

    it("names both file names it looked for when a split is missing", function()
      write(dir .. "/train.jsonl", line("P.", "H.", "entailment") .. "\n")
      local msg = err_of(snli.read_dir, dir)
      local d = dir:gsub("%p", "%%%0")
      assert.truthy(msg:find("no dev split in " .. d), msg)
      assert.truthy(msg:find(d .. "/snli_1%.0_dev%.jsonl and " .. d .. "/dev%.jsonl"), msg)
      -- Only the splits asked for are needed.
      local s = snli.read_dir(dir, { splits = { "train" } })
      assert.are.equal(1, #s.train.labels)
      assert.is_nil(s.dev)
    end)
  end)

  describe("write_dir", function()
    it("writes what read_dir reads back, creating the directory", function()
      local splits = {
        train = { premises = { 'He said "hi".', "Two\\one" }, hypotheses = { "x", "y" },
                  labels = { 2, 0 } },
        dev = { premises = { "p" }, hypotheses = { "h" }, labels = { 1 } },
        test = { premises = {}, hypotheses = {}, labels = {} },
      }
      snli.write_dir(dir .. "/sub/out", splits)
      local back = snli.read_dir(dir .. "/sub/out")
      for _, split in ipairs({ "train", "dev", "test" }) do
        assert.are.same(splits[split].premises, back[split].premises)
        assert.are.same(splits[split].hypotheses, back[split].hypotheses)
        assert.are.same(splits[split].labels, back[split].labels)
      end
      local f = assert(io.open(dir .. "/sub/out/dev.jsonl", "rb"))
      local text = f:read("*a")
      f:close()
      assert.truthy(text:find('"gold_label":"neutral"', 1, true), text)
    end)

    it("rejects a bad label before writing anything", function()
      local msg = err_of(snli.write_dir, dir .. "/o", {
        train = { premises = { "p" }, hypotheses = { "h" }, labels = { 0 } },
        dev = { premises = { "p", "q" }, hypotheses = { "h", "i" }, labels = { 1, 3 } },
      })
      assert.truthy(msg:find("dev example 2 needs .* label 0, 1 or 2 %(got string, string, 3%)"),
                    msg)
      assert.is_nil(io.open(dir .. "/o/train.jsonl"))
      assert.is_nil(io.open(dir .. "/o/train.jsonl.tmp"))
    end)

    it("names the file it cannot write, and leaves no temporary file", function()
      write(dir .. "/plain", "a file, not a directory")
      local msg = err_of(snli.write_dir, dir .. "/plain",
        { train = { premises = { "p" }, hypotheses = { "h" }, labels = { 0 } } })
      local d = dir:gsub("%p", "%%%0")
      assert.truthy(msg:find("cannot write " .. d .. "/plain/train%.jsonl%.tmp"), msg)
    end)
  end)
end)
