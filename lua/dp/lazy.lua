-- dp.lazy: namespaces whose submodules load on first access (dp.nn, dp.util.json, ...), so that
-- require "dp" stays cheap and a module missing from this build reads as nil.
return function(prefix, namespace)
  return setmetatable(namespace or {}, {
    __index = function(t, key)
      if type(key) ~= "string" then return nil end
      local name = prefix .. "." .. key
      local ok, module = pcall(require, name)
      if not ok then
        -- Only this module being absent means nil; an error inside it must surface.
        if tostring(module):find("module '" .. name .. "' not found", 1, true) then return nil end
        error(module, 2)
      end
      rawset(t, key, module)
      return module
    end,
  })
end
