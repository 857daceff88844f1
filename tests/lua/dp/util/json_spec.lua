-- Specs for dp.util.json: encoding, decoding, and errors that name the position.
local json = require "dp.util.json"

describe("dp.util.json", function()
  it("encodes tables with sorted keys, arrays and scalars", function()
    assert.equal('{"a":1,"b":[1,2.5,"x"],"c":true,"d":null}',
      json.encode({ b = { 1, 2.5, "x" }, a = 1, c = true, d = json.null }))
    assert.equal("[]", json.encode({}))
    assert.equal("{}", json.encode(json.object()))
    assert.equal('"a\\"b\\\\c\\n\\u0001"', json.encode('a"b\\c\n\1'))
    assert.equal("0.1", json.encode(0.1))
    assert.equal("-3", json.encode(-3))
    assert.equal("1e+300", json.encode(1e300))
  end)

  it("indents when asked", function()
    assert.equal('{\n  "a": [\n    1,\n    2\n  ]\n}', json.encode({ a = { 1, 2 } }, { indent = "  " }))
  end)

  it("names the path of values JSON cannot hold", function()
    assert.error_matches(function() json.encode({ x = { 1, 0 / 0 } }) end,
      "json.encode: $.x[2] is nan", nil, true)
    assert.error_matches(function() json.encode({ f = print }) end,
      "json.encode: $.f is a function", nil, true)
    local t = {}
    t.self = t
    assert.error_matches(function() json.encode(t) end, "json.encode: $.self is a cycle", nil, true)
  end)

  it("decodes objects, arrays, numbers, strings and literals", function()
    local v = json.decode(' {"a": [1, -2.5e2, 0.125], "s": "h\\u00e9\\n\\ud83d\\ude00", ' ..
                          '"t": true, "f": false, "n": null, "o": {}} ')
    assert.same({ 1, -250, 0.125 }, v.a)
    assert.equal("h\195\169\n\240\159\152\128", v.s)
    assert.is_true(v.t)
    assert.is_false(v.f)
    assert.equal(json.null, v.n)
    assert.equal("{}", json.encode(v.o))
  end)

  it("round-trips", function()
    local value = { name = "bench", shapes = { { 4096, 768, 768 } }, ratio = 1.0234, ok = true }
    assert.same(value, json.decode(json.encode(value)))
  end)

  it("names line, column and byte of malformed input", function()
    assert.error_matches(function() json.decode('{"a": 1,\n "b" 2}') end,
      "json.decode: expected ':' after object key at line 2 column 6 (byte 15)", nil, true)
    assert.error_matches(function() json.decode("[1, 2") end,
      "expected ',' or ']' in array at line 1 column 6 (byte 6), at the end of input", nil, true)
    assert.error_matches(function() json.decode("01") end, "trailing characters", nil, true)
    assert.error_matches(function() json.decode("1.") end, "bad number", nil, true)
    assert.error_matches(function() json.decode('"abc') end, "unterminated string", nil, true)
    assert.error_matches(function() json.decode("[tru]") end, "unexpected character 't'", nil, true)
    assert.error_matches(function() json.decode("") end, "unexpected end of input", nil, true)
    assert.error_matches(function() json.decode('"\\x"') end, "bad escape '\\x'", nil, true)
  end)
end)
