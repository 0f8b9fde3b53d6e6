use super::*;

#[test]
fn openai_chat_json_with_a_tool_call() {
    let body =
        br#"{"id":"c","model":"gpt-4o-2024","choices":[{"index":0,"finish_reason":"tool_calls",
        "message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function",
        "function":{"name":"run_shell","arguments":"{\"command\":\"cat /tmp/x\"}"}}]}}],
        "usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;
    let facts = ResponseFacts::parse(Api::ChatCompletions, "application/json", body);
    assert_eq!(facts.model, "gpt-4o-2024");
    assert_eq!(facts.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        (facts.input_tokens, facts.output_tokens),
        (Some(12), Some(7))
    );
    assert_eq!(
        facts.tool_calls,
        vec![("run_shell".into(), r#"{"command":"cat /tmp/x"}"#.into())]
    );
}

#[test]
fn openai_chat_stream_assembles_tool_call_arguments() {
    let body = concat!(
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"run_shell\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"command\\\":\"}}]}}]}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"ls\\\"}\"}}]}}]}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        "data: [DONE]\n\n"
    );
    let facts = ResponseFacts::parse(
        Api::ChatCompletions,
        "text/event-stream; charset=utf-8",
        body.as_bytes(),
    );
    assert_eq!(facts.model, "m1");
    assert_eq!(facts.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        facts.tool_calls,
        vec![("run_shell".into(), r#"{"command":"ls"}"#.into())]
    );
    assert_eq!(
        (facts.input_tokens, facts.output_tokens),
        (Some(3), Some(4))
    );
}

#[test]
fn anthropic_json_and_stream() {
    let body = br#"{"id":"m","type":"message","model":"claude-y","stop_reason":"tool_use",
        "content":[{"type":"text","text":"Running it."},{"type":"tool_use","id":"t","name":"bash","input":{"command":"ls -la"}}],
        "usage":{"input_tokens":20,"output_tokens":9}}"#;
    let facts = ResponseFacts::parse(Api::Messages, "application/json", body);
    assert_eq!(facts.model, "claude-y");
    assert_eq!(facts.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(facts.text, "Running it.");
    assert_eq!(
        facts.tool_calls,
        vec![("bash".into(), r#"{"command":"ls -la"}"#.into())]
    );
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-y\",\"usage\":{\"input_tokens\":5}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"name\":\"bash\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"command\\\": \\\"pwd\\\"}\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":11}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
    let facts = ResponseFacts::parse(Api::Messages, "text/event-stream", stream.as_bytes());
    assert_eq!(facts.text, "Hi");
    assert_eq!(
        facts.tool_calls,
        vec![("bash".into(), r#"{"command": "pwd"}"#.into())]
    );
    assert_eq!(
        (facts.input_tokens, facts.output_tokens),
        (Some(5), Some(11))
    );
    assert_eq!(facts.finish_reason.as_deref(), Some("tool_use"));
}

#[test]
fn ollama_json_and_ndjson() {
    let body = br#"{"model":"llama3","message":{"role":"assistant","content":"",
        "tool_calls":[{"function":{"name":"run","arguments":{"cmd":"ls"}}}]},
        "done":true,"done_reason":"stop","prompt_eval_count":8,"eval_count":2}"#;
    let facts = ResponseFacts::parse(Api::OllamaChat, "application/json; charset=utf-8", body);
    assert_eq!(
        facts.tool_calls,
        vec![("run".into(), r#"{"cmd":"ls"}"#.into())]
    );
    assert_eq!(
        (facts.input_tokens, facts.output_tokens),
        (Some(8), Some(2))
    );
    let stream = "{\"model\":\"llama3\",\"response\":\"The \",\"done\":false}\n{\"model\":\"llama3\",\"response\":\"sky\",\"done\":false}\n{\"model\":\"llama3\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,\"eval_count\":2}\n";
    let facts = ResponseFacts::parse(
        Api::OllamaGenerate,
        "application/x-ndjson",
        stream.as_bytes(),
    );
    assert_eq!(facts.text, "The sky");
    assert_eq!(facts.finish_reason.as_deref(), Some("stop"));
    assert_eq!(facts.output_tokens, Some(2));
}

#[test]
fn responses_api_json_and_stream() {
    let body = br#"{"id":"r","model":"gpt-5","status":"completed","output":[
        {"type":"function_call","name":"shell","arguments":"{\"cmd\":\"id\"}"},
        {"type":"message","content":[{"type":"output_text","text":"done"}]}],
        "usage":{"input_tokens":30,"output_tokens":5}}"#;
    let facts = ResponseFacts::parse(Api::Responses, "application/json", body);
    assert_eq!(facts.finish_reason.as_deref(), Some("completed"));
    assert_eq!(
        facts.tool_calls,
        vec![("shell".into(), r#"{"cmd":"id"}"#.into())]
    );
    assert_eq!(facts.text, "done");
    let stream = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\"}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{}}}\n\n",
        serde_json::from_slice::<Value>(body).unwrap()
    );
    let streamed = ResponseFacts::parse(Api::Responses, "text/event-stream", stream.as_bytes());
    assert_eq!(streamed, facts);
}

#[test]
fn garbage_answers_are_unparsed() {
    for ct in [
        "application/json",
        "text/event-stream",
        "application/x-ndjson",
    ] {
        for body in [
            &b""[..],
            b"\x00\x01\x02",
            b"data: {oops\n\n",
            b"{\"choices\":7}",
        ] {
            let facts = ResponseFacts::parse(Api::ChatCompletions, ct, body);
            assert!(facts.tool_calls.is_empty(), "{ct} {body:?}");
        }
    }
    assert!(ResponseFacts::parse(Api::Messages, "application/json", b"<html>").unparsed);
}
