//! The benchmark's ceiling: bare actix-web answering fixed bytes from
//! memory, nothing else (no middleware, no headers beyond the content
//! type). `ceiling PORT /path=FILE… [*=FILE]` serves each file's bytes at its
//! path, and the `*` file at every other path (so a load that varies the
//! path, as the service's item rows do, costs the load generator the same).

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|port| port.parse().ok())
        .expect("usage: ceiling PORT /path=FILE…");
    let routes: Vec<(String, web::Bytes)> = args
        .map(|route| {
            let (path, file) = route.split_once('=').expect("a route is /path=FILE");
            let body = std::fs::read(file).expect("the file is readable");
            (path.to_owned(), web::Bytes::from(body))
        })
        .collect();
    let answer = |body: web::Bytes| {
        move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }
    };
    HttpServer::new(move || {
        routes.iter().fold(App::new(), |app, (path, body)| {
            if path == "*" {
                app.default_service(web::to(answer(body.clone())))
            } else {
                app.route(path, web::get().to(answer(body.clone())))
            }
        })
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
