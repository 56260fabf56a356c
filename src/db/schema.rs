// @generated automatically by Diesel CLI.

diesel::table! {
    chat_sessions (id) {
        id -> Text,
        user_id -> Integer,
        title -> Text,
        model -> Text,
        approval_mode -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    checkpoint_changes (checkpoint_id, path) {
        checkpoint_id -> Integer,
        path -> Text,
        before -> Nullable<Text>,
        after -> Nullable<Text>,
        before_object -> Nullable<Text>,
        after_object -> Nullable<Text>,
    }
}

diesel::table! {
    checkpoints (id) {
        id -> Integer,
        session_id -> Text,
        call_id -> Nullable<Text>,
        kind -> Text,
        reverted_call_id -> Nullable<Text>,
        by_user -> Nullable<Text>,
        dropped -> Bool,
        created_at -> Text,
    }
}

diesel::table! {
    events (id) {
        id -> Integer,
        session_id -> Text,
        kind -> Text,
        payload -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    logins (token_hash) {
        token_hash -> Text,
        user_id -> Integer,
        created_at -> Text,
        expires_at -> Text,
    }
}

diesel::table! {
    meta (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    nodes (node_id) {
        node_id -> Text,
        advertise_url -> Text,
        started_at -> Text,
        heartbeat_at -> Text,
    }
}

diesel::table! {
    session_leases (session_id) {
        session_id -> Text,
        node_id -> Text,
        expires_at -> Text,
    }
}

diesel::table! {
    tool_calls (call_id) {
        call_id -> Text,
        session_id -> Text,
        turn_id -> Text,
        tool -> Text,
        code -> Text,
        risk_level -> Text,
        risk_reasons -> Text,
        approval_mode -> Text,
        decision -> Nullable<Text>,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Text>,
        exit_code -> Nullable<BigInt>,
        result_for_model -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        username -> Text,
        password_hash -> Text,
        approval_mode -> Text,
        created_at -> Text,
    }
}

diesel::joinable!(chat_sessions -> users (user_id));
diesel::joinable!(checkpoint_changes -> checkpoints (checkpoint_id));
diesel::joinable!(checkpoints -> chat_sessions (session_id));
diesel::joinable!(events -> chat_sessions (session_id));
diesel::joinable!(logins -> users (user_id));
diesel::joinable!(session_leases -> chat_sessions (session_id));
diesel::joinable!(tool_calls -> chat_sessions (session_id));

diesel::allow_tables_to_appear_in_same_query!(
    chat_sessions,
    checkpoint_changes,
    checkpoints,
    events,
    logins,
    meta,
    nodes,
    session_leases,
    tool_calls,
    users,
);
