// The official Ollama client against `spillway serve` (SPILLWAY_URL): list,
// show, ps, version, generate and chat (whole and streamed), JSON format,
// errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';

const ollama = new Ollama({ host: process.env.SPILLWAY_URL });
const opts = { temperature: 0, num_predict: 16, repeat_penalty: 1 };

test('list, show, ps, version', async () => {
  const { models } = await ollama.list();
  assert.equal(models.length, 1);
  assert.equal(models[0].name, 'stories');
  assert.equal(models[0].details.format, 'gguf');
  const info = await ollama.show({ model: 'stories' });
  assert.equal(info.model_info['general.architecture'], 'llama');
  assert.equal(info.details.family, 'llama');
  assert.ok(info.capabilities.includes('completion'));
  assert.ok(info.template.length > 0);
  const ps = await ollama.ps();
  assert.equal(ps.models[0].name, 'stories');
  const v = await ollama.version();
  assert.equal(typeof v.version, 'string');
});

test('generate: whole and streamed', async () => {
  const whole = await ollama.generate({ model: 'stories', prompt: 'Once upon a time', raw: true,
                                        options: opts });
  assert.equal(whole.done, true);
  assert.equal(whole.response, ', there was a little girl named Lily. She loved to play');
  assert.equal(whole.eval_count, 16);
  assert.equal(whole.done_reason, 'length');
  assert.ok(whole.total_duration > 0 && whole.eval_duration > 0);
  let text = '', last = null;
  for await (const part of await ollama.generate({ model: 'stories', prompt: 'Once upon a time',
                                                   raw: true, options: opts, stream: true })) {
    text += part.response;
    last = part;
  }
  assert.equal(text, whole.response);
  assert.equal(last.done, true);
  assert.ok(Array.isArray(last.context) && last.context.length === 5 + 16);
});

test('chat: streamed parts end with done', async () => {
  let text = '', final = null;
  for await (const part of await ollama.chat({
    model: 'stories:latest', messages: [{ role: 'user', content: 'Hello' }], stream: true,
    options: opts })) {
    assert.equal(part.message.role, 'assistant');
    text += part.message.content;
    if (part.done) final = part;
  }
  assert.ok(text.length > 0);
  assert.equal(final.done_reason, 'length');
  assert.equal(final.eval_count, 16);
  const whole = await ollama.chat({ model: 'stories', messages: [{ role: 'user', content: 'Hello' }],
                                    options: opts });
  assert.equal(whole.message.content, text);
});

test('chat: format json', async () => {
  const r = await ollama.chat({ model: 'stories', messages: [{ role: 'user', content: 'JSON' }],
                                format: 'json', options: { temperature: 0, num_predict: 200 } });
  if (r.done_reason === 'stop') assert.equal(typeof JSON.parse(r.message.content), 'object');
  else assert.match(r.message.content, /^\s*\{/);
});

test('errors carry the message', async () => {
  await assert.rejects(
    ollama.generate({ model: 'stories', prompt: 'x', options: { temperature: -3 } }),
    (e) => e.status_code === 400 && /temperature/.test(e.error));
});
