import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;

/** One OpenAI chat call with the JDK's HttpURLConnection: no proxy or trust code of its own. */
public class Call {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL("https://api.openai.com/v1/chat/completions").openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setRequestProperty("content-type", "application/json");
        c.setRequestProperty("authorization", "Bearer sk-java-test");
        c.setRequestProperty("x-tapgate-customer-identifier", args[0]);
        try (OutputStream out = c.getOutputStream()) {
            out.write("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}".getBytes(StandardCharsets.UTF_8));
        }
        System.out.println("status " + c.getResponseCode());
        try (InputStream in = c.getInputStream()) { System.out.println(new String(in.readAllBytes(), StandardCharsets.UTF_8).length() > 0 ? "body" : "empty"); }
    }
}
