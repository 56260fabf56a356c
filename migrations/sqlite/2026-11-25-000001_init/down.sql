DROP TABLE meta;
DROP TABLE tool_calls;
DROP TABLE events;
DROP TABLE chat_sessions;
DROP TABLE logins;
DROP TABLE users;
