// The AWS SDK for JavaScript v3 (@aws-sdk/client-s3, with lib-storage and
// the presigner) against the S3 endpoint, its defaults left on: CRC32 on
// every upload, aws-chunked bodies with a trailing checksum for streams of
// unknown length. Driven by tests/e2e/test_e2e_s3_clients.py, which checks
// what this prints (one JSON document) and the file it downloads.
//
// node s3_sdk.mjs ENDPOINT ACCESS_KEY_ID SECRET BUCKET UPLOAD_FILE DOWNLOAD_FILE
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  CopyObjectCommand,
  DeleteObjectsCommand,
  PutObjectTaggingCommand,
  GetObjectTaggingCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const [endpoint, accessKeyId, secretAccessKey, bucket, upload, download] = process.argv.slice(2);
const s3 = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  maxAttempts: 1,
  credentials: { accessKeyId, secretAccessKey },
});
const out = {};
const failure = async (command) => {
  try {
    await s3.send(command);
    return null;
  } catch (e) {
    return [e.name, e.$metadata?.httpStatusCode];
  }
};

await s3.send(new CreateBucketCommand({ Bucket: bucket }));
const put = await s3.send(
  new PutObjectCommand({
    Bucket: bucket,
    Key: "hello.txt",
    Body: "hello from the js sdk",
    ContentType: "text/plain",
    Metadata: { colour: "blue" },
  }),
);
out.put = { etag: put.ETag, crc32: put.ChecksumCRC32 };
const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "hello.txt", ChecksumMode: "ENABLED" }));
out.get = {
  body: await got.Body.transformToString(),
  metadata: got.Metadata,
  contentType: got.ContentType,
  crc32: got.ChecksumCRC32,
};

// a file stream: lib-storage cuts it into 5 MiB parts of a multipart upload
const done = await new Upload({
  client: s3,
  params: { Bucket: bucket, Key: "dir/big.bin", Body: createReadStream(upload) },
  partSize: 5 * 1024 * 1024,
  queueSize: 2,
}).done();
out.upload = { etag: done.ETag, checksumType: done.ChecksumType };
const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "dir/big.bin" }));
out.head = { etag: head.ETag, length: head.ContentLength };
const whole = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/big.bin" }));
await pipeline(whole.Body, createWriteStream(download));
const range = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/big.bin", Range: "bytes=100-199" }));
out.range = { hex: Buffer.from(await range.Body.transformToByteArray()).toString("hex"), contentRange: range.ContentRange };

await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy.txt", CopySource: `${bucket}/hello.txt` }));
await s3.send(
  new PutObjectTaggingCommand({ Bucket: bucket, Key: "copy.txt", Tagging: { TagSet: [{ Key: "team", Value: "blue" }] } }),
);
out.tags = (await s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: "copy.txt" }))).TagSet;
const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: "/" }));
out.list = {
  keys: (listed.Contents ?? []).map((o) => o.Key),
  prefixes: (listed.CommonPrefixes ?? []).map((p) => p.Prefix),
};
const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: "hello.txt" }), { expiresIn: 60 });
const presigned = await fetch(url);
out.presigned = { status: presigned.status, body: await presigned.text() };
out.missing = await failure(new GetObjectCommand({ Bucket: bucket, Key: "no/such/key" }));
out.ifNoneMatch = await failure(
  new PutObjectCommand({ Bucket: bucket, Key: "hello.txt", Body: "again", IfNoneMatch: "*" }),
);
const deleted = await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: "copy.txt" }] } }));
out.deleted = (deleted.Deleted ?? []).map((d) => d.Key);
console.log(JSON.stringify(out));
