--- eventrocks.sys: the two questions about the machine that the command
-- line asks and that lua-system (clock and sleep, used directly) does not
-- answer: is a descriptor a terminal, and how many bytes a store's files
-- take.  Answered by Debian's luv and LuaFileSystem.
local M = {}

local uv = require "luv"
local lfs = require "lfs"

--- isatty(fd) -> true when the descriptor (0, 1, 2...) is a terminal.
function M.isatty(fd)
  return uv.guess_handle(fd) == "tty"
end

--- disk_size(dir) -> bytes of the regular files in `dir` (not below it),
-- or nil, message.
function M.disk_size(dir)
  local ok, iter, state = pcall(lfs.dir, dir)
  if not ok then return nil, (tostring(iter):gsub("^cannot open ", "")) end
  local total = 0
  for name in iter, state do
    local size = lfs.attributes(dir .. "/" .. name, "size")
    if size and lfs.attributes(dir .. "/" .. name, "mode") == "file" then total = total + size end
  end
  return total
end

return M
