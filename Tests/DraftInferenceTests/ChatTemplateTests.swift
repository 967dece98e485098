import DraftInference
import XCTest

/// Renderings against Jinja's (jinja2 3.x rendering each family's shipped template, as `apply_chat_template` does):
/// the expected strings below are its output for the same conversations.
final class ChatTemplateTests: XCTestCase {
    // SmolLM2-135M-Instruct's template, as its GGUF's tokenizer.chat_template holds it.
    static let smolLM2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    // Meta-Llama-3-8B-Instruct's tokenizer_config.json template.
    static let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    // Phi-3-mini-4k-instruct's.
    static let phi3 = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"

    let question = [ChatMessage(role: "user", content: "What is the capital of France?")]
    let conversation = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: " Hi \n"),
                        ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "2+2?")]

    func testChatMLAsSmolLM2() throws {
        let template = try ChatTemplate(template: Self.smolLM2)
        XCTAssertEqual(template.family, .chatML)
        XCTAssertEqual(template.render(question), "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(template.render(conversation), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi \n<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    func testLlama3() throws {
        let template = try ChatTemplate(template: Self.llama3, bosToken: "<|begin_of_text|>")
        XCTAssertEqual(template.family, .llama3)
        XCTAssertEqual(template.render(question), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        XCTAssertEqual(template.render(conversation), "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    }

    func testPhi3() throws {
        let template = try ChatTemplate(template: Self.phi3)
        XCTAssertEqual(template.family, .phi3)
        XCTAssertEqual(template.render(question), "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n")
        XCTAssertEqual(template.render(conversation), "<|system|>\nBe brief.<|end|>\n<|user|>\n Hi \n<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n")
    }

    func testUnknownTemplateIsAnErrorNamingIt() {
        let gemma = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] }}{% endfor %}"
        XCTAssertThrowsError(try ChatTemplate(template: gemma)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("unknown chat template '{{ bos_token }}{% for message in messages %}"), message)
            XCTAssertFalse(message.contains("\n"))
        }
    }
}
