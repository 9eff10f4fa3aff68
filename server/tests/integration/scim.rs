//! SCIM 2.0 as Microsoft Entra drives it, in both modes (with and without `aadOptscim062020`),
//! replaying the documented request sequences; plus discovery, general-client features, and the
//! effect of provisioning on the proxy.

use crate::common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use toolgate_domain::model::TokenKind;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim {
    app: TestApp,
    token: String,
    /// Query suffix Entra appends to every URL in the flagged mode.
    flag: &'static str,
}

impl Scim {
    async fn new(flagged: bool) -> Self {
        let app = spawn_app().await;
        let (_, token) = app
            .server
            .state
            .store
            .create_token(TokenKind::Scim, "entra", None)
            .await
            .unwrap();
        Scim {
            app,
            token,
            flag: if flagged { "aadOptscim062020=true" } else { "" },
        }
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        let q = if self.flag.is_empty() {
            String::new()
        } else {
            format!("{sep}{}", self.flag)
        };
        self.app.url(&format!("/scim/v2{path}{q}"))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .app
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        if !text.is_empty() {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/scim+json"),
                "{path}"
            );
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, b, _) = self.send(reqwest::Method::GET, path, None).await;
        (s, b)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, b, _) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (s, b)
    }

    async fn patch(&self, path: &str, ops: Value) -> (u16, Value) {
        let (s, b, _) = self
            .send(
                reqwest::Method::PATCH,
                path,
                Some(json!({"schemas": [PATCH], "Operations": ops})),
            )
            .await;
        (s, b)
    }

    async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }
}

fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "addresses": [{"primary": true, "type": "work", "country": null, "formatted": null, "locality": null, "postalCode": null, "region": null, "streetAddress": null}],
        "displayName": "Test User",
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"employeeNumber": null}
    })
}

/// The user lifecycle Entra runs: test connection, match, create, duplicate, update, disable,
/// re-enable, delete.
async fn user_lifecycle(flagged: bool) {
    let s = Scim::new(flagged).await;
    // "Test connection": an unknown user name filter answers an empty list, never 404.
    let (st, b) = s
        .get("/Users?filter=userName%20eq%20%22c2a9f9d0-4c35-4a4c-9a8f-0b6f1f7b3a2e%22")
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["totalResults"], 0);
    assert_eq!(b["Resources"], json!([]));

    let (st, created) = s
        .post(
            "/Users",
            entra_user("Test_User_ab6490ee@contoso.com", "Test_User_5b5a4d62"),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["userName"], "Test_User_ab6490ee@contoso.com");
    assert_eq!(created["active"], true);
    assert!(created["meta"]["created"].is_string() && created["meta"]["lastModified"].is_string());
    assert!(
        created["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{id}"))
    );
    assert!(
        created["meta"]["version"]
            .as_str()
            .unwrap()
            .starts_with("W/")
    );
    assert!(
        created.get("roles").is_none(),
        "empty values are not stored"
    );

    // Match by userName (any case) and by externalId (quoted or not).
    for f in [
        "userName%20eq%20%22test_user_ab6490ee%40contoso.com%22",
        "externalId%20eq%20%22Test_User_5b5a4d62%22",
        "externalId%20eq%20Test_User_5b5a4d62",
    ] {
        let (st, b) = s.get(&format!("/Users?filter={f}")).await;
        assert_eq!(st, 200);
        assert_eq!(b["totalResults"], 1, "{f}: {b}");
        assert_eq!(b["Resources"][0]["id"], json!(id));
    }

    // A duplicate userName is 409 uniqueness.
    let (st, dup) = s
        .post(
            "/Users",
            entra_user("TEST_USER_ab6490ee@contoso.com", "other"),
        )
        .await;
    assert_eq!(st, 409, "{dup}");
    assert_eq!(dup["scimType"], "uniqueness");
    assert_eq!(dup["status"], "409");
    assert_eq!(
        dup["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );

    // Updates as Entra sends them.
    let op = |o: &str| {
        if flagged {
            o.to_lowercase()
        } else {
            o.to_string()
        }
    };
    let (st, b) = s
        .patch(&format!("/Users/{id}"), json!([
            {"op": op("Replace"), "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
            {"op": op("Replace"), "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": op("Add"), "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "E-1"},
        ]))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["emails"][0]["value"], "updated@contoso.com");
    assert_eq!(b["name"]["familyName"], "updatedFamilyName");
    assert_eq!(b[ENT]["employeeNumber"], "E-1");
    let (st, b) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": op("Replace"), "path": "userName", "value": "renamed@contoso.com"}]),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["userName"], "renamed@contoso.com");
    // Path-less replace with dotted and URN keys.
    let (st, b) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {
            "displayName": "New Display", "name.givenName": "NewGiven",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "E-2"}}]),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (
            b["displayName"].clone(),
            b["name"]["givenName"].clone(),
            b[ENT]["employeeNumber"].clone()
        ),
        (json!("New Display"), json!("NewGiven"), json!("E-2"))
    );

    // Manager add and removal.
    let (_, mgr) = s
        .post("/Users", entra_user("manager@contoso.com", "mgr"))
        .await;
    let mgr_id = mgr["id"].as_str().unwrap();
    let (st, b) = s.patch(&format!("/Users/{id}"), json!([{"op": op("Add"), "path": "manager", "value": [{"$ref": null, "value": mgr_id}]}])).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b[ENT]["manager"]["value"], json!(mgr_id));
    let (st, b) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": ""}}]),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(b[ENT].get("manager").is_none(), "{b}");

    // Disable: "False" string without the flag, boolean with it. Still visible, with active false.
    let disable = if flagged {
        json!(false)
    } else {
        json!("False")
    };
    let (st, b) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": op("Replace"), "path": "active", "value": disable}]),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["active"], false);
    let (st, b) = s.get(&format!("/Users/{id}")).await;
    assert_eq!((st, b["active"].clone()), (200, json!(false)));
    let (_, b) = s
        .get("/Users?filter=userName%20eq%20%22renamed%40contoso.com%22")
        .await;
    assert_eq!(b["Resources"][0]["active"], false);
    // Re-enable.
    let enable = if flagged { json!(true) } else { json!("True") };
    let (st, b) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": op("Replace"), "path": "active", "value": enable}]),
        )
        .await;
    assert_eq!((st, b["active"].clone()), (200, json!(true)));

    // Delete: 204, then 404.
    assert_eq!(s.delete(&format!("/Users/{id}")).await, 204);
    assert_eq!(s.delete(&format!("/Users/{id}")).await, 404);
    let (st, b) = s.get(&format!("/Users/{id}")).await;
    assert_eq!(st, 404);
    assert_eq!(b["status"], "404");

    // Every change is an audit event attributed to the SCIM client.
    let (_, audit) = s.app.get("/api/v1/audit?limit=50").await;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"scim.user.created")
            && kinds.contains(&"scim.user.patched")
            && kinds.contains(&"scim.user.deleted"),
        "{kinds:?}"
    );
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["principal"] == "scim:entra")
    );
}

#[tokio::test]
async fn entra_user_lifecycle_without_flag() {
    user_lifecycle(false).await;
}

#[tokio::test]
async fn entra_user_lifecycle_with_flag() {
    user_lifecycle(true).await;
}

async fn group_lifecycle(flagged: bool) {
    let s = Scim::new(flagged).await;
    let (_, u1) = s.post("/Users", entra_user("u1@contoso.com", "u1")).await;
    let (_, u2) = s.post("/Users", entra_user("u2@contoso.com", "u2")).await;
    let (u1, u2) = (
        u1["id"].as_str().unwrap().to_string(),
        u2["id"].as_str().unwrap().to_string(),
    );

    let (st, b) = s
        .get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22Group1DisplayName%22")
        .await;
    assert_eq!((st, b["totalResults"].clone()), (200, json!(0)));
    let (st, g) = s
        .post("/Groups", json!({"externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "Group1DisplayName",
            "meta": {"resourceType": "Group"}, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "members": []}))
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (st, dup) = s.post("/Groups", json!({"displayName": "group1displayname", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]})).await;
    assert_eq!((st, dup["scimType"].clone()), (409, json!("uniqueness")));

    let op = |o: &str| {
        if flagged {
            o.to_lowercase()
        } else {
            o.to_string()
        }
    };
    let (st, b) = s.patch(&format!("/Groups/{gid}"), json!([{"op": op("Add"), "path": "members", "value": [{"$ref": null, "value": u1}, {"$ref": null, "value": u2}]}])).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["members"].as_array().unwrap().len(), 2);
    // Removal in the form of each mode.
    let removal = if flagged {
        json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}])
    } else {
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": u1}]}])
    };
    let (st, b) = s.patch(&format!("/Groups/{gid}"), removal).await;
    assert_eq!(st, 200, "{b}");
    let members: Vec<&str> = b["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![u2.as_str()]);
    // The user shows the group; excludedAttributes=members leaves members out.
    let (_, user) = s.get(&format!("/Users/{u2}")).await;
    assert_eq!(user["groups"][0]["value"], json!(gid));
    let (_, listed) = s
        .get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22Group1DisplayName%22")
        .await;
    assert_eq!(listed["totalResults"], 1);
    assert!(listed["Resources"][0].get("members").is_none());
    // Rename, replace of members, unknown member.
    let (st, b) = s
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": op("Replace"), "path": "displayName", "value": "Renamed"}]),
        )
        .await;
    assert_eq!((st, b["displayName"].clone()), (200, json!("Renamed")));
    let (st, b) = s
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "path": "members", "value": [{"value": u1}]}]),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(b["members"][0]["value"], json!(u1));
    let (st, b) = s
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}]),
        )
        .await;
    assert_eq!((st, b["scimType"].clone()), (400, json!("invalidValue")));
    let (_, still) = s.get(&format!("/Groups/{gid}")).await;
    assert_eq!(
        still["members"].as_array().unwrap().len(),
        1,
        "a rejected PATCH changes nothing"
    );
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await, 204);
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await, 404);
}

#[tokio::test]
async fn entra_group_lifecycle_without_flag() {
    group_lifecycle(false).await;
}

#[tokio::test]
async fn entra_group_lifecycle_with_flag() {
    group_lifecycle(true).await;
}

#[tokio::test]
async fn scim_needs_a_scim_token() {
    let s = Scim::new(false).await;
    for token in [
        None,
        Some(s.app.admin_token.clone()),
        Some("tgs_wrong".to_string()),
    ] {
        let mut req = s.app.http.get(s.url("/Users"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        let b: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        assert_eq!(b["status"], "401");
    }
    // And the SCIM token opens nothing else.
    let res = s
        .app
        .http
        .get(s.app.url("/api/v1/users"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn discovery_and_general_client_features() {
    let s = Scim::new(false).await;
    let (st, spc) = s.get("/ServiceProviderConfig").await;
    assert_eq!(st, 200);
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    let (_, rt) = s.get("/ResourceTypes").await;
    assert_eq!(rt["totalResults"], 2);
    let (st, user_rt) = s.get("/ResourceTypes/User").await;
    assert_eq!(
        (st, user_rt["schemaExtensions"][0]["schema"].clone()),
        (200, json!(ENT))
    );
    let (_, schemas) = s.get("/Schemas").await;
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![USER, ENT, "urn:ietf:params:scim:schemas:core:2.0:Group"]
    );
    let (st, one) = s.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(st, 200);
    assert!(
        one["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "userName" && a["uniqueness"] == "server")
    );
    let (st, _, _) = s
        .send(
            reqwest::Method::POST,
            "/ServiceProviderConfig",
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 405);
    let (st, _, _) = s
        .send(reqwest::Method::PUT, "/Schemas", Some(json!({})))
        .await;
    assert_eq!(st, 405);

    for i in 0..5 {
        let (st, _) = s.post("/Users", json!({"schemas": [USER], "userName": format!("user{i}@x.com"), "title": if i % 2 == 0 { "Engineer" } else { "Sales" }})).await;
        assert_eq!(st, 201);
    }
    // Filters beyond Entra's, sorting, paging, projection, .search.
    let (st, b) = s.get("/Users?filter=title%20eq%20%22Engineer%22%20and%20userName%20sw%20%22user%22&sortBy=userName&sortOrder=descending").await;
    assert_eq!(st, 200, "{b}");
    let names: Vec<&str> = b["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["user4@x.com", "user2@x.com", "user0@x.com"]);
    let (_, b) = s.get("/Users?filter=not%20(title%20eq%20%22Engineer%22)%20or%20userName%20ew%20%220%40x.com%22&sortBy=userName").await;
    let names: Vec<&str> = b["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["user0@x.com", "user1@x.com", "user3@x.com"]);
    let (_, b) = s
        .get("/Users?startIndex=2&count=2&sortBy=userName&attributes=userName")
        .await;
    assert_eq!(
        (
            b["totalResults"].clone(),
            b["itemsPerPage"].clone(),
            b["startIndex"].clone()
        ),
        (json!(5), json!(2), json!(2))
    );
    assert_eq!(b["Resources"][0]["userName"], "user1@x.com");
    assert!(b["Resources"][0].get("title").is_none() && b["Resources"][0].get("id").is_some());
    let (st, b) = s.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "title pr", "attributes": ["title"], "count": 1})).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (b["totalResults"].clone(), b["itemsPerPage"].clone()),
        (json!(5), json!(1))
    );
    let (st, b) = s
        .post("/.search", json!({"filter": "userName eq \"user3@x.com\""}))
        .await;
    assert_eq!((st, b["totalResults"].clone()), (200, json!(1)));
    // Bad filters are 400 invalidFilter.
    for f in [
        "userName%20eq",
        "userName%20zz%20%22x%22",
        "(userName%20eq%20%22x%22",
    ] {
        let (st, b) = s.get(&format!("/Users?filter={f}")).await;
        assert_eq!(
            (st, b["scimType"].clone()),
            (400, json!("invalidFilter")),
            "{f}"
        );
    }
    // PUT replaces; If-Match guards.
    let (_, b) = s
        .get("/Users?filter=userName%20eq%20%22user1%40x.com%22")
        .await;
    let id = b["Resources"][0]["id"].as_str().unwrap().to_string();
    let version = b["Resources"][0]["meta"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let res = s
        .app
        .http
        .put(s.url(&format!("/Users/{id}")))
        .bearer_auth(&s.token)
        .header("content-type", "application/scim+json")
        .header("if-match", "W/\"999\"")
        .body(json!({"schemas": [USER], "userName": "user1@x.com", "nickName": "one"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let res = s
        .app
        .http
        .put(s.url(&format!("/Users/{id}")))
        .bearer_auth(&s.token)
        .header("content-type", "application/scim+json")
        .header("if-match", version)
        .body(json!({"schemas": [USER], "userName": "user1@x.com", "nickName": "one"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("etag").is_some());
    let b: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(b["nickName"], "one");
    assert!(b.get("title").is_none(), "PUT replaced the whole resource");
    // Malformed bodies are SCIM 400s.
    let (st, b, _) = s
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(json!("not an object")),
        )
        .await;
    assert_eq!((st, b["scimType"].clone()), (400, json!("invalidSyntax")));
    let (st, b) = s
        .post(
            "/Users",
            json!({"schemas": [USER], "displayName": "no user name"}),
        )
        .await;
    assert_eq!((st, b["scimType"].clone()), (400, json!("invalidValue")));
}

#[tokio::test]
async fn provisioning_changes_reach_the_proxy_at_once() {
    let s = Scim::new(true).await;
    let up = spawn_upstream("up").await;
    let connector = s.app.create_connector("up", &up.url).await;
    let (_, u) = s
        .post("/Users", entra_user("agent-owner@contoso.com", "owner"))
        .await;
    let uid = u["id"].as_str().unwrap().to_string();
    let (_, g) = s.post("/Groups", json!({"displayName": "Engineers", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]})).await;
    let gid = g["id"].as_str().unwrap().to_string();
    s.app.set_policy(&gid, &connector, &["echo"], &[]).await;
    let token = s.app.personal_token(&uid).await;
    let via = s.app.mcp_client(&token).await;
    let names = |tools: Vec<rmcp::model::Tool>| {
        tools
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        names(via.list_all_tools().await.unwrap()).is_empty(),
        "not a member yet"
    );

    // Membership added by SCIM: the very next request sees the tool.
    s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]),
    )
    .await;
    assert_eq!(names(via.list_all_tools().await.unwrap()), vec!["up__echo"]);
    let args = json!({"text": "hi"}).as_object().cloned().unwrap();
    via.call_tool(CallToolRequestParams::new("up__echo").with_arguments(args.clone()))
        .await
        .unwrap();

    // Disabled by SCIM: the token is refused on the next request.
    s.patch(
        &format!("/Users/{uid}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let raw = s
        .app
        .http
        .post(s.app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    // Re-enabled: access comes back without re-creating anything.
    s.patch(
        &format!("/Users/{uid}"),
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await;
    let via = s.app.mcp_client(&token).await;
    via.call_tool(CallToolRequestParams::new("up__echo").with_arguments(args.clone()))
        .await
        .unwrap();
    // Removed from the last granting group: the next call is denied.
    s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]),
    )
    .await;
    let err = via
        .call_tool(CallToolRequestParams::new("up__echo").with_arguments(args))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
}

#[tokio::test]
async fn scim_groups_keep_the_membership_the_provider_sends() {
    let s = Scim::new(false).await;
    let (_, u) = s.post("/Users", entra_user("m@contoso.com", "m")).await;
    let (_, g) = s
        .post("/Groups", json!({"displayName": "Managed", "externalId": "8aa1a0c0", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}))
        .await;
    let (uid, gid) = (u["id"].as_str().unwrap(), g["id"].as_str().unwrap());
    let (st, b) = s
        .app
        .put(&format!("/api/v1/groups/{gid}/members/{uid}"), json!(null))
        .await;
    assert_eq!(st, 409, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("SCIM"));
    // Policies on it are still the admin's to set.
    let connector = s.app.create_connector("c", "http://127.0.0.1:9/mcp").await;
    s.app.set_policy(gid, &connector, &["echo"], &[]).await;
}
