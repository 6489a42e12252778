# A Rails Action Cable server on Rails' Redis adapter (see cable.rb), for
# tests/rails/run.sh.
require_relative "cable"

map "/cable" do
  run ActionCable.server
end
