# A standalone Rails Action Cable server: the reference for what Rails does
# with the same protocol subset Hearth serves. No storage, no auth: every
# connection is accepted. Run it with ./run.sh PORT.
require "logger"
require "action_cable"
require "action_cable/subscription_adapter/async"

module ApplicationCable
  # Accepts everyone: the benchmark measures the cable, not sign-in.
  class Connection < ActionCable::Connection::Base
  end

  class Channel < ActionCable::Channel::Base
  end
end

# Identifier {"channel":"ChatroomChannel","id":<room id>}, as in Hearth.
class ChatroomChannel < ApplicationCable::Channel
  def subscribed
    stream_from "chatrooms:#{params[:id]}"
  end

  # Broadcasts {"content": …} to every subscriber of the room.
  def speak(data)
    ActionCable.server.broadcast("chatrooms:#{params[:id]}", { content: data["content"] })
  end
end

ActionCable.server.config.tap do |config|
  config.cable = { "adapter" => "async" }
  config.connection_class = -> { ApplicationCable::Connection }
  config.disable_request_forgery_protection = true
  config.logger = Logger.new($stderr, level: ENV.fetch("CABLE_LOG_LEVEL", "warn"))
  config.worker_pool_size = Integer(ENV.fetch("CABLE_WORKERS", "4"))
end

map "/cable" do
  run ActionCable.server
end
