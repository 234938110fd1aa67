/* host: the table lent to plugins (JSON, encoders, request building, cache)
 * and the step driver, without any network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "buf.h"
#include "client.h"
#include "host.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct agape_host *H;

/* A provider as the registry would make it, without a plugin. */
static void fake_provider(struct provider *p)
{
    memset(p, 0, sizeof(*p));
    p->name = (char *)"fake";
    pthread_mutex_init(&p->cache_lock, NULL);
    p->cache = json_object();
}

static void fake_provider_fini(struct provider *p)
{
    json_decref(p->cache);
    pthread_mutex_destroy(&p->cache_lock);
}

static void xfer_fini(struct client_xfer *x)
{
    client_xfer_reset(x);
    buf_fini(&x->resp_body);
}

static void test_table(void **state)
{
    (void)state;
    assert_int_equal(H->size, sizeof(struct agape_host));
    assert_int_equal(H->abi_version, AGAPE_PLUGIN_ABI_VERSION);
    /* every member is filled */
    const void *const *fns = (const void *const *)((const char *)H + offsetof(struct agape_host,
                                                                                log));
    size_t n = (sizeof(struct agape_host) - offsetof(struct agape_host, log)) / sizeof(void *);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(fns[i]);
    }
    int64_t a = H->mono_ms();
    int64_t w = H->now_ms();
    assert_true(a > 0);
    assert_true(w > (int64_t)1700000000 * 1000);
}

static void test_json_read(void **state)
{
    (void)state;
    const char *text = "{\"customer\":{\"email\":\"a@example.com\",\"id\":\"c1\"},"
                       "\"links\":[{\"rel\":\"self\"},"
                       "{\"rel\":\"approve\",\"href\":\"https://x\"}],"
                       "\"amount\":2000,\"paid\":true,\"rate\":1.5,\"none\":null}";
    char err[128] = "";
    struct agape_json *doc = H->json_parse(text, strlen(text), err, sizeof(err));
    assert_non_null(doc);

    assert_string_equal(H->json_str(doc, "customer.email"), "a@example.com");
    assert_string_equal(H->json_str(doc, "links.1.rel"), "approve");
    assert_string_equal(H->json_str(doc, "links.1.href"), "https://x");
    assert_null(H->json_str(doc, "links.2.rel"));  /* past the end */
    assert_null(H->json_str(doc, "links.x.rel"));  /* not an index */
    assert_null(H->json_str(doc, "links.-1.rel"));
    assert_null(H->json_str(doc, "customer.email.x"));
    assert_null(H->json_str(doc, "amount"));       /* not a string */
    assert_null(H->json_str(NULL, "amount"));
    assert_int_equal(H->json_int(doc, "amount", -1), 2000);
    assert_int_equal(H->json_int(doc, "rate", -1), -1); /* a real is not an integer */
    assert_int_equal(H->json_int(doc, "missing", 7), 7);
    assert_true(H->json_bool(doc, "paid", false));
    assert_false(H->json_bool(doc, "amount", false));

    assert_int_equal(H->json_type(doc), AGAPE_JSON_OBJECT);
    assert_int_equal(H->json_type(H->json_get(doc, "links")), AGAPE_JSON_ARRAY);
    assert_int_equal(H->json_type(H->json_get(doc, "rate")), AGAPE_JSON_REAL);
    assert_int_equal(H->json_type(H->json_get(doc, "amount")), AGAPE_JSON_INT);
    assert_int_equal(H->json_type(H->json_get(doc, "paid")), AGAPE_JSON_BOOL);
    assert_int_equal(H->json_type(H->json_get(doc, "none")), AGAPE_JSON_NULL);
    assert_int_equal(H->json_type(H->json_get(doc, "customer.id")), AGAPE_JSON_STRING);
    assert_int_equal(H->json_type(H->json_get(doc, "nope")), AGAPE_JSON_ABSENT);

    const struct agape_json *links = H->json_get(doc, "links");
    assert_int_equal(H->json_size(links), 2);
    assert_int_equal(H->json_size(doc), 6);
    assert_string_equal(H->json_str(H->json_at(links, 0), "rel"), "self");
    assert_null(H->json_at(links, 2));
    assert_null(H->json_at(doc, 0));

    /* keys in insertion order */
    const char *want[] = {"customer", "links", "amount", "paid", "rate", "none"};
    for (size_t i = 0; i < 6; i++) {
        const struct agape_json *v = NULL;
        assert_string_equal(H->json_key_at(doc, i, &v), want[i]);
        assert_non_null(v);
    }
    assert_null(H->json_key_at(doc, 6, NULL));
    H->json_free(doc);

    assert_null(H->json_parse("{\"a\":", 5, err, sizeof(err)));
    assert_non_null(strstr(err, "invalid JSON"));
}

static void test_json_build_and_dump(void **state)
{
    (void)state;
    struct agape_json *o = H->json_new_object();
    assert_int_equal(H->json_set_str(o, "id", "ch_1"), AGAPE_OK);
    assert_int_equal(H->json_set_int(o, "amount", 2000), AGAPE_OK);
    assert_int_equal(H->json_set_bool(o, "live", false), AGAPE_OK);
    assert_int_equal(H->json_set_null(o, "gone"), AGAPE_OK);
    assert_int_equal(H->json_set_strn(o, "cur", "usdxxx", 3), AGAPE_OK);
    assert_int_equal(H->json_set_str(o, "id", "ch_2"), AGAPE_OK); /* replaces, keeps its place */
    struct agape_json *meta = H->json_add_object(o, "metadata");
    assert_non_null(meta);
    H->json_set_str(meta, "order", "A-17");
    struct agape_json *arr = H->json_add_array(o, "tags");
    assert_non_null(arr);
    assert_int_equal(H->json_append_str(arr, "x"), AGAPE_OK);
    assert_int_equal(H->json_append_int(arr, 3), AGAPE_OK);
    struct agape_json *inner = H->json_add_object(arr, NULL);
    H->json_set_int(inner, "n", 1);
    assert_int_equal(H->json_set_copy(o, "copy", meta), AGAPE_OK);

    struct agape_buf *b = H->buf_new();
    H->buf_add(b, "x=", 2); /* dump appends */
    assert_int_equal(H->json_dump(o, b), AGAPE_OK);
    assert_string_equal(H->buf_data(b),
                        "x={\"id\":\"ch_2\",\"amount\":2000,\"live\":false,\"gone\":null,"
                        "\"cur\":\"usd\",\"metadata\":{\"order\":\"A-17\"},"
                        "\"tags\":[\"x\",3,{\"n\":1}],\"copy\":{\"order\":\"A-17\"}}");
    assert_int_equal(H->buf_len(b), strlen(H->buf_data(b)));

    /* misuse is refused, not a crash */
    assert_int_equal(H->json_set_str(arr, "k", "v"), AGAPE_EINVAL);  /* not an object */
    assert_int_equal(H->json_set_str(o, NULL, "v"), AGAPE_EINVAL);
    assert_int_equal(H->json_set_str(o, "bad", "\xff\xfe"), AGAPE_EINVAL); /* not UTF-8 */
    assert_int_equal(H->json_append_str(o, "v"), AGAPE_EINVAL);       /* not an array */
    assert_null(H->json_add_object(o, NULL));
    assert_null(H->json_add_array(arr, "k"));
    H->buf_free(b);
    H->json_free(o);
}

static void test_form_add(void **state)
{
    (void)state;
    struct agape_buf *b = H->buf_new();
    assert_int_equal(H->form_add(b, "amount", "2000"), AGAPE_OK);
    H->form_add(b, "currency", "usd");
    H->form_add(b, "description", NULL); /* left out, no '&' */
    H->form_add(b, "automatic_payment_methods[enabled]", "true");
    H->form_add(b, "metadata[order_id]", "A-17");
    assert_string_equal(H->buf_data(b), "amount=2000&currency=usd&automatic_payment_methods["
                                        "enabled]=true&metadata[order_id]=A-17");

    struct agape_buf *c = H->buf_new();
    H->form_add(c, "description", "Order 17 & more=yes");
    H->form_add(c, "metadata[note]", "[x] ~._-");
    H->form_add(c, "name", "Zoë+1/2?");
    assert_string_equal(H->buf_data(c), "description=Order%2017%20%26%20more%3Dyes"
                                        "&metadata[note]=%5Bx%5D%20~._-"
                                        "&name=Zo%C3%AB%2B1%2F2%3F");
    H->buf_free(b);
    H->buf_free(c);
}

static void test_url_escape_and_encoders(void **state)
{
    (void)state;
    struct agape_buf *b = H->buf_new();
    const char *s = "a b/c?d=é~[]";
    assert_int_equal(H->url_escape(b, s, strlen(s)), AGAPE_OK);
    assert_string_equal(H->buf_data(b), "a%20b%2Fc%3Fd%3D%C3%A9~%5B%5D");

    struct agape_buf *h = H->buf_new();
    H->hex(h, "\x01\xfe", 2);
    assert_string_equal(H->buf_data(h), "01fe");
    struct agape_buf *e = H->buf_new();
    H->base64(e, "\xfb\xff", 2);
    H->base64url(e, "\xfb\xff", 2);
    assert_string_equal(H->buf_data(e), "+/8=-_8");
    unsigned char out[8];
    assert_int_equal(H->base64_decode("+/8=", 4, out, sizeof(out)), 2);
    assert_int_equal(H->base64url_decode("-_8", 3, out, sizeof(out)), 2);
    assert_int_equal(H->base64url_decode("-_8*", 4, out, sizeof(out)), -1);

    unsigned char mac[32];
    assert_int_equal(H->hmac_sha256("k", 1, "m", 1, mac), AGAPE_OK);
    assert_true(H->ct_equal("abc", 3, "abc", 3));
    assert_false(H->ct_equal("abc", 3, "ab", 2));
    H->buf_free(b);
    H->buf_free(h);
    H->buf_free(e);
}

static void test_request_building(void **state)
{
    (void)state;
    struct provider prov;
    struct client_xfer x;
    struct host_call hc;
    fake_provider(&prov);
    client_xfer_init(&x);
    json_t *input = json_pack("{s:i}", "amount", 2000);
    host_call_init(&hc, &prov, "charge", input, &x);
    json_decref(input); /* the call took its own reference */
    struct agape_call *call = &hc.pub;

    assert_int_equal(call->size, sizeof(struct agape_call));
    assert_ptr_equal(call->host, H);
    assert_string_equal(call->provider, "fake");
    assert_int_equal(call->step, 0);
    assert_null(call->resp);
    assert_int_equal(call->retry_after_ms, -1);
    assert_int_equal(H->json_int(call->input, "amount", 0), 2000);
    assert_int_equal(H->json_size(call->state), 0);

    /* nothing before req_start */
    assert_int_equal(H->req_header(call, "X-A", "1"), AGAPE_EINVAL);
    assert_int_equal(H->req_start(call, "PROPFINDX", "http://h/"), AGAPE_EINVAL); /* 9 chars */
    assert_int_equal(H->req_start(call, "", "http://h/"), AGAPE_EINVAL);
    assert_false(hc.request_built);

    /* An answer of an earlier step is there and must survive req_start. */
    x.status = 201;
    buf_adds(&x.resp_body, "{\"id\":\"old\"}");

    assert_int_equal(H->req_start(call, "POST", "http://127.0.0.1:9/v1/charges"), AGAPE_OK);
    assert_true(hc.request_built);
    assert_int_equal(H->req_header(call, "Idempotency-Key", "k-1"), AGAPE_OK);
    assert_int_equal(H->req_header(call, "X-Bad", "a\r\nInjected: 1"), AGAPE_EINVAL);
    assert_int_equal(H->req_header(call, "X-Bad\n", "v"), AGAPE_EINVAL);
    assert_int_equal(H->req_header(call, "X:Bad", "v"), AGAPE_EINVAL);
    const char *body = "amount=2000&currency=usd";
    assert_int_equal(H->req_body(call, "application/x-www-form-urlencoded", body, strlen(body)),
                     AGAPE_OK);
    assert_int_equal(H->req_basic_auth(call, "sk_test_123", ""), AGAPE_OK);
    assert_int_equal(H->req_basic_auth(call, "a:b", "c"), AGAPE_EINVAL);

    assert_string_equal(x.method, "POST");
    assert_string_equal(x.url, "http://127.0.0.1:9/v1/charges");
    assert_int_equal(x.n_req_headers, 2);
    assert_string_equal(x.req_headers[0].name, "Idempotency-Key");
    assert_string_equal(x.req_headers[0].value, "k-1");
    assert_string_equal(x.req_headers[1].name, "Content-Type");
    assert_string_equal(x.req_headers[1].value, "application/x-www-form-urlencoded");
    assert_int_equal(x.body_len, strlen(body));
    assert_memory_equal(x.body, body, strlen(body));
    assert_string_equal(x.userpwd, "sk_test_123:");
    assert_int_equal(x.status, 201);
    assert_string_equal(buf_cstr(&x.resp_body), "{\"id\":\"old\"}");

    /* a second req_start starts over */
    assert_int_equal(H->req_start(call, "GET", "http://127.0.0.1:9/v1/charges/ch_1"), AGAPE_OK);
    assert_string_equal(x.method, "GET");
    assert_int_equal(x.n_req_headers, 0);
    assert_null(x.body);
    assert_null(x.userpwd);

    /* the header limit */
    char name[32];
    for (int i = 0; i < CLIENT_MAX_HEADERS; i++) {
        snprintf(name, sizeof(name), "X-H%d", i);
        assert_int_equal(H->req_header(call, name, "v"), AGAPE_OK);
    }
    assert_int_equal(H->req_header(call, "X-One-Too-Many", "v"), AGAPE_ERANGE);

    host_call_fini(&hc);
    xfer_fini(&x);
    fake_provider_fini(&prov);
}

/* Step functions for the driver tests. */
static enum agape_step step_send_nothing(struct agape_call *call)
{
    (void)call;
    return AGAPE_STEP_SEND;
}

static enum agape_step step_leaks_secret(struct agape_call *call)
{
    snprintf(call->err, sizeof(call->err), "refused key sk_test_hostsecret42 by provider");
    call->outcome = AGAPE_OUTCOME_AUTH;
    return AGAPE_STEP_DONE;
}

static enum agape_step step_fail_silently(struct agape_call *call)
{
    (void)call;
    return AGAPE_STEP_FAIL;
}

static enum agape_step step_bad_outcome(struct agape_call *call)
{
    call->outcome = (enum agape_outcome)42;
    return AGAPE_STEP_DONE;
}

/* Two steps: a GET, then the answer's id and a response header into the result. */
static enum agape_step step_two(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    if (call->resp == NULL) {
        if (h->resp_header(call, "Request-Id") != NULL) {
            return AGAPE_STEP_FAIL; /* no answer yet: no headers */
        }
        h->json_set_str(call->state, "asked", "yes");
        h->req_start(call, "GET", "http://127.0.0.1:9/x");
        return AGAPE_STEP_SEND;
    }
    struct agape_json *doc = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    h->json_set_str(call->result, "provider_ref", h->json_str(doc, "id"));
    h->json_set_str(call->result, "request_id", h->resp_header(call, "request-id"));
    h->json_set_str(call->result, "asked", h->json_str(call->state, "asked"));
    h->json_set_int(call->result, "status_seen", call->resp->status);
    h->json_free(doc);
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static void test_step_driver(void **state)
{
    (void)state;
    struct provider prov;
    struct client_xfer x;
    struct host_call hc;
    fake_provider(&prov);
    client_xfer_init(&x);

    host_call_init(&hc, &prov, "charge", NULL, &x);
    assert_int_equal(host_call_step(&hc, step_send_nothing), AGAPE_STEP_FAIL);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(hc.pub.err, "plugin returned SEND without a request");
    host_call_fini(&hc);

    /* A configured secret never leaves a step in its reason. */
    log_secret_add("sk_test_hostsecret42");
    host_call_init(&hc, &prov, "charge", NULL, &x);
    assert_int_equal(host_call_step(&hc, step_leaks_secret), AGAPE_STEP_DONE);
    assert_string_equal(hc.pub.err, "refused key [redacted] by provider");
    host_call_fini(&hc);

    host_call_init(&hc, &prov, "charge", NULL, &x);
    assert_int_equal(host_call_step(&hc, step_fail_silently), AGAPE_STEP_FAIL);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_true(strlen(hc.pub.err) > 0); /* a default reason */
    host_call_fini(&hc);

    host_call_init(&hc, &prov, "charge", NULL, &x);
    assert_int_equal(host_call_step(&hc, step_bad_outcome), AGAPE_STEP_FAIL);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    host_call_fini(&hc);

    host_call_init(&hc, &prov, "refund", NULL, &x);
    assert_int_equal(host_call_step(&hc, NULL), AGAPE_STEP_FAIL); /* not implemented */
    assert_non_null(strstr(hc.pub.err, "refund"));
    host_call_fini(&hc);

    host_call_init(&hc, &prov, "get", NULL, &x);
    assert_int_equal(host_call_step(&hc, step_two), AGAPE_STEP_SEND);
    assert_string_equal(x.method, "GET");
    /* what the client would do: answer part filled */
    x.result = CLIENT_DONE;
    x.status = 200;
    buf_adds(&x.resp_body, "{\"id\":\"obj_9\"}");
    x.resp_headers[0].name = strdup("Request-Id");
    x.resp_headers[0].value = strdup("req_123");
    x.n_resp_headers = 1;
    host_call_answer(&hc);
    assert_int_equal(hc.pub.step, 1);
    assert_non_null(hc.pub.resp);
    assert_int_equal(hc.pub.resp->status, 200);
    assert_int_equal(host_call_step(&hc, step_two), AGAPE_STEP_DONE);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(json_string_value(json_object_get(hc.result, "provider_ref")), "obj_9");
    assert_string_equal(json_string_value(json_object_get(hc.result, "request_id")), "req_123");
    assert_string_equal(json_string_value(json_object_get(hc.result, "asked")), "yes");
    assert_int_equal(json_integer_value(json_object_get(hc.result, "status_seen")), 200);
    assert_null(x.url); /* the step that answered DONE built no request */
    host_call_fini(&hc);

    xfer_fini(&x);
    fake_provider_fini(&prov);
}

static void test_webhook_header(void **state)
{
    (void)state;
    struct client_header hs[2] = {
        {(char *)"Stripe-Signature", (char *)"t=1,v1=ab"},
        {(char *)"Content-Type", (char *)"application/json"},
    };
    struct host_call hc;
    host_call_init(&hc, NULL, "verify", NULL, NULL);
    hc.wh_headers = hs;
    hc.n_wh_headers = 2;
    assert_string_equal(H->webhook_header(&hc.pub, "stripe-signature"), "t=1,v1=ab");
    assert_string_equal(H->webhook_header(&hc.pub, "CONTENT-TYPE"), "application/json");
    assert_null(H->webhook_header(&hc.pub, "X-Other"));
    assert_null(H->resp_header(&hc.pub, "Content-Type")); /* no transfer, no answer */
    assert_int_equal(H->req_start(&hc.pub, "GET", "http://h/"), AGAPE_EINVAL);
    host_call_fini(&hc);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_cache(void **state)
{
    (void)state;
    struct provider prov;
    struct host_call hc;
    struct host_call other;
    fake_provider(&prov);
    host_call_init(&hc, &prov, "charge", NULL, NULL);
    host_call_init(&other, &prov, "charge", NULL, NULL);

    assert_null(H->cache_get(&hc.pub, "token"));
    assert_int_equal(H->cache_put(&hc.pub, "token", "abc", 60000), AGAPE_OK);
    const char *v = H->cache_get(&hc.pub, "token");
    assert_non_null(v);
    assert_string_equal(v, "abc");

    /* another call replaces the entry: our pointer stays valid for this step */
    assert_int_equal(H->cache_put(&other.pub, "token", "def", 60000), AGAPE_OK);
    assert_string_equal(v, "abc");
    assert_string_equal(H->cache_get(&hc.pub, "token"), "def");
    assert_string_equal(H->cache_get(&other.pub, "token"), "def");

    /* ttl <= 0 removes */
    assert_int_equal(H->cache_put(&hc.pub, "token", "x", 0), AGAPE_OK);
    assert_null(H->cache_get(&hc.pub, "token"));
    assert_int_equal(H->cache_put(&hc.pub, "never", NULL, 10), AGAPE_OK);

    /* expiry */
    assert_int_equal(H->cache_put(&hc.pub, "short", "s", 20), AGAPE_OK);
    assert_string_equal(H->cache_get(&hc.pub, "short"), "s");
    sleep_ms(40);
    assert_null(H->cache_get(&hc.pub, "short"));
    assert_null(json_object_get(prov.cache, "short")); /* dropped, not just hidden */

    assert_null(H->cache_get(&hc.pub, NULL));
    assert_int_equal(H->cache_put(&hc.pub, NULL, "v", 10), AGAPE_EINVAL);

    host_call_fini(&hc);
    host_call_fini(&other);
    fake_provider_fini(&prov);
}

static int setup(void **state)
{
    (void)state;
    H = host_table();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json_read),
        cmocka_unit_test(test_json_build_and_dump),
        cmocka_unit_test(test_form_add),
        cmocka_unit_test(test_url_escape_and_encoders),
        cmocka_unit_test(test_request_building),
        cmocka_unit_test(test_step_driver),
        cmocka_unit_test(test_webhook_header),
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
