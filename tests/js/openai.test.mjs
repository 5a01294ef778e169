// The official OpenAI client against `spillway serve` (SPILLWAY_URL), the way
// applications use it: models, chat (whole and streamed, with usage), tools,
// JSON mode, completions and errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = process.env.SPILLWAY_URL;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const user = (content) => [{ role: 'user', content }];

test('models.list names the loaded model', async () => {
  const page = await client.models.list();
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].object, 'model');
  assert.equal(page.data[0].id, 'stories');
});

test('chat: whole and streamed answers are the same text', async () => {
  const whole = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: user('Tell me a story.'), max_tokens: 24, temperature: 0,
  });
  const msg = whole.choices[0].message;
  assert.equal(msg.role, 'assistant');
  assert.ok(msg.content.length > 0);
  assert.equal(whole.model, 'gpt-4o-mini');
  assert.equal(whole.usage.completion_tokens, 24);
  assert.equal(typeof whole.usage.prompt_tokens_details.cached_tokens, 'number');

  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: user('Tell me a story.'), max_tokens: 24, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '', role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role ??= c.delta.role ?? null;
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, msg.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 24);
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0, 'the repeated prompt came from the cache');
});

test('chat: tool_choice forces a call the client can run', async () => {
  const tools = [{ type: 'function', function: { name: 'get_time', description: 'Current time',
                                                  parameters: { type: 'object', properties: {} } } }];
  const r = await client.chat.completions.create({
    model: 'm', messages: user('What time is it?'), tools, tool_choice: 'required', temperature: 0,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls[0].function.name, 'get_time');
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), {});
  // the result goes back in the conversation
  const follow = await client.chat.completions.create({
    model: 'm', tools, max_tokens: 8, temperature: 0,
    messages: [...user('What time is it?'), c.message,
               { role: 'tool', tool_call_id: c.message.tool_calls[0].id, content: '12:00' }],
  });
  assert.ok(['stop', 'length', 'tool_calls'].includes(follow.choices[0].finish_reason));
});

test('chat: json_object mode gives JSON', async () => {
  const r = await client.chat.completions.create({
    model: 'm', messages: user('Reply in JSON.'), response_format: { type: 'json_object' },
    max_tokens: 200, temperature: 0,
  });
  const c = r.choices[0];
  if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.message.content), 'object');
  else assert.match(c.message.content, /^\s*\{/);
});

test('completions: greedy continuation', async () => {
  const r = await client.completions.create({
    model: 'stories', prompt: 'Once upon a time', max_tokens: 12, temperature: 0,
  });
  assert.equal(r.choices[0].text, ', there was a little girl named Lily. She');
  assert.equal(r.usage.prompt_tokens, 5);
});

test('errors are OpenAI errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /messages/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: user('x'), temperature: 7 }),
    (e) => e.status === 400 && e.param === 'temperature');
  const long = 'dog '.repeat(3000);
  await assert.rejects(
    client.completions.create({ model: 'm', prompt: long }),
    (e) => e.status === 400 && /context/.test(e.message));
});
