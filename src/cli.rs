//! The command line: `serve` (default), `migrate`, `schema`, `account create`, `resource register`.
//! What a person must read (the bootstrap login, generated passwords) goes to stdout, never to the log.
use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::config::{AccountCommand, Cli, Command, ResourceCommand};
use crate::service::identity::accounts;
use crate::service::identity::roles;
use crate::{graphql, shutdown_signal, Application};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or_else(|| Command::Serve(Box::new(cli.settings))) {
        Command::Serve(settings) => {
            let settings = *settings;
            let mut app = Application::build(settings).await?;
            let addr = app.local_addr()?;
            if let Some(created) = app.take_bootstrapped() {
                print_created("Created the first account", &created);
            }
            println!("appkeys is serving GraphiQL on http://{addr}/ (GraphQL at http://{addr}/graphql)");
            println!("  the web console is at http://{addr}/console");
            tracing::info!(%addr, "listening");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate(database) => {
            let settings = database.into_settings();
            let store = crate::service::open(&settings).await?;
            if let Some(created) = crate::service::prepare(&store, &settings).await? {
                print_created("Created the first account", &created);
            }
            println!("migrations are up to date");
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Account(AccountCommand::Create { name, owner_email, owner_password, database }) => {
            let settings = database.into_settings();
            let store = crate::service::open(&settings).await?;
            crate::service::prepare(&store, &settings).await?;
            let password = owner_password.as_ref().map(|p| p.expose_secret().to_owned());
            let created = accounts::create(&store, &name, &owner_email, password.as_deref())
                .await
                .map_err(crate::error::AppError::into_anyhow)
                .context("creating the account")?;
            print_created("Created account", &created);
            Ok(())
        }
        Command::Resource(ResourceCommand::Register { id, name, database }) => {
            let settings = database.into_settings();
            let store = crate::service::open(&settings).await?;
            crate::service::prepare(&store, &settings).await?;
            let resource = roles::register_resource(&store, &id, &name)
                .await
                .map_err(crate::error::AppError::into_anyhow)
                .context("registering the resource")?;
            println!("Registered resource {} ({})", resource.id, resource.name);
            Ok(())
        }
    }
}

fn print_created(what: &str, created: &accounts::CreatedAccount) {
    if created.reissued {
        println!(
            "The owner {} of {:?} has not logged in yet, so here is a new one-time password (the earlier one no \
             longer works; this repeats at every start until the owner logs in).",
            created.email, created.account
        );
    } else {
        println!("{what} {:?} with owner {}.", created.account, created.email);
    }
    match &created.generated_password {
        Some(password) => {
            println!("  One-time password (shown only now): {}", password.expose_secret());
        }
        None => println!("  The owner's password is the one you gave."),
    }
    println!(
        "  Log in: open GraphiQL and run\n    mutation {{ login(input: {{account: \"{}\", email: \"{}\", password: \"…\"}}) {{ token }} }}\n  then send the token as the header  Authorization: Bearer <token>",
        created.account, created.email
    );
}
