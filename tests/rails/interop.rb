# Rails and Hearth on one Redis, both directions, with Rails' own code on the
# Rails side (see run.sh for the processes):
#
# (a) ActionCable.server.broadcast("chatrooms:<id>", …) from Ruby reaches a
#     Hearth subscriber as exactly the bytes a Rails server sends its own
#     subscriber of the same identifier;
# (b) a message posted to Hearth reaches the Rails server's subscriber.
#
# Env: HEARTH_URL, RAILS_URL (http://127.0.0.1:<port>), REDIS_URL, CHANNEL_PREFIX.
require "json"
require "net/http"
require "socket"
require "uri"
require "websocket/driver"
require_relative "cable"

WAIT = 5 # seconds any one step may take

def fail!(message)
  warn "FAIL: #{message}"
  exit 1
end

# A raw WebSocket client speaking actioncable-v1-json: the frames as text.
class CableClient
  attr_reader :url

  def initialize(http_url, headers = {})
    @url = http_url.sub(/\Ahttp/, "ws") + "/cable"
    uri = URI(@url)
    @socket = TCPSocket.new(uri.host, uri.port)
    @frames = Queue.new
    @driver = WebSocket::Driver.client(self, protocols: ["actioncable-v1-json"])
    headers.each { |name, value| @driver.set_header(name, value) }
    @driver.on(:message) { |event| @frames << event.data }
    @driver.on(:close) { @frames << :closed }
    @driver.start
    @reader = Thread.new do
      loop { @driver.parse(@socket.readpartial(4096)) }
    rescue IOError, SystemCallError
      @frames << :closed
    end
  end

  def write(bytes)
    @socket.write(bytes)
  end

  # The next frame's text, skipping pings; nil after `timeout` seconds.
  def next_text(timeout = WAIT)
    deadline = Time.now + timeout
    loop do
      return nil if Time.now >= deadline
      # Ruby 3.1's Queue#pop has no timeout: poll.
      text = begin
        @frames.pop(true)
      rescue ThreadError
        sleep 0.01
        next
      end
      fail!("#{@url} closed") if text == :closed
      return text unless JSON.parse(text)["type"] == "ping"
    end
  end

  def next_frame(timeout = WAIT)
    text = next_text(timeout)
    text && JSON.parse(text)
  end

  def send_json(value)
    @driver.text(JSON.generate(value))
  end

  # Welcome, subscribe, confirmation.
  def subscribe(identifier)
    welcome = next_frame
    fail!("#{@url}: no welcome, got #{welcome.inspect}") unless welcome&.fetch("type") == "welcome"
    send_json(command: "subscribe", identifier: identifier)
    answer = next_frame
    unless answer == { "type" => "confirm_subscription", "identifier" => identifier }
      fail!("#{@url}: subscription not confirmed: #{answer.inspect}")
    end
  end
end

# Signs a user up on Hearth; returns the session cookie.
def sign_up(hearth)
  uri = URI("#{hearth}/sign_up")
  nickname = "rails#{rand(1_000_000)}"
  response = Net::HTTP.post_form(uri, "email" => "#{nickname}@example.com",
                                      "nickname" => nickname, "password" => "correct horse battery")
  fail!("sign-up answered #{response.code}") unless response.code == "303"
  response["set-cookie"][/hearth_session=[^;]+/]
end

def general_room(hearth, cookie)
  uri = URI("#{hearth}/")
  response = Net::HTTP.start(uri.host, uri.port) { |http| http.get("/", "Cookie" => cookie) }
  response["location"][%r{/chatrooms/(\d+)}, 1].to_i
end

hearth = ENV.fetch("HEARTH_URL")
rails = ENV.fetch("RAILS_URL")
cookie = sign_up(hearth)
room = general_room(hearth, cookie)
stream = "chatrooms:#{room}"
identifier = JSON.generate(channel: "ChatroomChannel", id: room)

hearth_cable = CableClient.new(hearth, "Cookie" => cookie)
hearth_cable.subscribe(identifier)
rails_cable = CableClient.new(rails)
rails_cable.subscribe(identifier)

# Hearth subscribes to a room's Redis channel just after confirming its first
# subscriber; probe until both sides hear the same broadcast.
heard = (0...50).any? do |n|
  ActionCable.server.broadcast(stream, { probe: n })
  [hearth_cable, rails_cable].all? do |cable|
    loop do
      frame = cable.next_frame(0.2)
      break false if frame.nil?
      probe = frame.dig("message", "probe")
      fail!("unexpected frame while probing: #{frame}") if probe.nil?
      break true if probe == n
    end
  end
end
fail!("Hearth never heard #{stream} through Redis") unless heard

# (a) Rails → Hearth, byte for byte as Rails delivers it.
ActionCable.server.broadcast(stream, { type: "announcement", content: "Deploy at 18:00 <b>&</b> “ü” \u2028 🚀", n: [1, 2.5, nil, true] })
from_rails = rails_cable.next_text
from_hearth = hearth_cable.next_text
fail!("the Rails subscriber got nothing") if from_rails.nil?
fail!("the Hearth subscriber got nothing") if from_hearth.nil?
unless from_hearth == from_rails
  fail!("Hearth's frame differs from Rails'\n  rails:  #{from_rails}\n  hearth: #{from_hearth}")
end
puts "ok (a) ActionCable.server.broadcast reached Hearth as Rails delivers it: #{from_hearth}"

# (b) Hearth → Rails: a posted message reaches the Rails server's subscriber.
uri = URI("#{hearth}/chatrooms/#{room}/messages")
posted = Net::HTTP.start(uri.host, uri.port) do |http|
  request = Net::HTTP::Post.new(uri, "Cookie" => cookie, "Accept" => "application/json")
  request.set_form_data("content" => "hello <rails>")
  http.request(request)
end
fail!("posting to Hearth answered #{posted.code}") unless posted.code == "201"
rails_message = rails_cable.next_frame&.fetch("message")
hearth_message = hearth_cable.next_frame&.fetch("message")
fail!("the Rails subscriber did not get Hearth's message") if rails_message.nil?
unless rails_message["type"] == "message" && rails_message["content"] == "hello <rails>"
  fail!("the Rails subscriber got #{rails_message.inspect}")
end
# What Rails' subscriber sees is Hearth's message plus the node marker.
unless rails_message.except("hearth_node") == hearth_message && rails_message["hearth_node"].is_a?(String)
  fail!("Rails got #{rails_message.inspect}, Hearth's subscriber #{hearth_message.inspect}")
end
puts "ok (b) a message posted to Hearth reached the Rails server's subscriber: seq #{rails_message["seq"]}"
