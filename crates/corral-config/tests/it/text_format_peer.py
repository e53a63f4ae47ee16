"""protobuf's own Python text-format parser on the texts corral's reader is checked against.

Usage: text_format_peer.py DESCRIPTOR_SET TEXTS_JSON
Reads a FileDescriptorSet (model_config.proto as compiled for corral) and a JSON list of
texts; prints a JSON list with, per text, {"ok": base64 of the message serialized
deterministically} or {"error": the parser's message}.
"""

import base64
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format


def main():
    with open(sys.argv[1], "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    model_config = message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))
    with open(sys.argv[2]) as f:
        texts = json.load(f)
    answers = []
    for text in texts:
        try:
            message = text_format.Parse(text, model_config())
            answers.append({"ok": base64.b64encode(message.SerializeToString(deterministic=True)).decode()})
        except text_format.ParseError as e:
            answers.append({"error": str(e)})
    json.dump(answers, sys.stdout)


main()
