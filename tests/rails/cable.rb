# The Action Cable set-up shared by the Rails server (config.ru) and the test
# (interop.rb): Rails' own Redis adapter on REDIS_URL, with the channel
# prefix CHANNEL_PREFIX (empty: no prefix, as a Rails app without
# channel_prefix), and a ChatroomChannel that streams "chatrooms:<id>" as
# Hearth's does.
require "logger"
require "action_cable"
require "active_support/hash_with_indifferent_access"
require "action_cable/subscription_adapter/redis"

module ApplicationCable
  # Accepts everyone: the test is about Redis, not sign-in.
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
end

ActionCable.server.config.tap do |config|
  # Indifferent access, as Rails' config_for gives it: the adapter reads
  # some keys as strings and others as symbols.
  cable = ActiveSupport::HashWithIndifferentAccess.new(adapter: "redis", url: ENV.fetch("REDIS_URL"))
  prefix = ENV.fetch("CHANNEL_PREFIX", "")
  cable["channel_prefix"] = prefix unless prefix.empty?
  config.cable = cable
  config.connection_class = -> { ApplicationCable::Connection }
  config.disable_request_forgery_protection = true
  config.logger = Logger.new($stderr, level: ENV.fetch("CABLE_LOG_LEVEL", "warn"))
end
